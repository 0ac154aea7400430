// The committed demo base model (demo/base), written by demo/pretrain.ts with the shared engine
// (whose forward test/model/llama.test.ts checks against an independent float64 reference): it is
// what the demo claims — good at the ops it was pretrained on, poor at the held-out task ops, on
// inputs it never saw — and its files say which script made it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { initEngine } from '../../shared/tensor/engine.ts';
import { loadBaseModel } from '../../shared/train/load.ts';
import { loadTokenizer } from '../../shared/data/tokenizer.ts';
import { llamaConfigToJson } from '../../shared/model/config.ts';
import { BASE_CONFIG } from '../../demo/pretrain.ts';
import { BASE_OPS, TASK_OPS, generate, makeExample } from '../../demo/tasks.ts';
import { greedyExactMatch } from '../../demo/score.ts';

const BASE = new URL('../../demo/base', import.meta.url).pathname;

test('the committed base has the pretraining script’s config and says it was made by it', () => {
  const config = JSON.parse(readFileSync(`${BASE}/config.json`, 'utf8'));
  const { chorus_demo: provenance, ...rest } = config;
  assert.deepEqual(rest, JSON.parse(JSON.stringify(llamaConfigToJson(BASE_CONFIG))));
  assert.match(provenance, /^pretrained by demo\/pretrain\.ts: 1600 steps on copy,up,rev,rotl, seed 7$/);
});

test('the tokenizer shipped with the base maps bytes to their own ids, with no specials', async () => {
  const tok = await loadTokenizer(BASE, 256);
  assert.deepEqual(tok.encode('rotup:abc=BCA\n'), [...Buffer.from('rotup:abc=BCA\n')]);
  assert.equal(tok.bosId, undefined);
  assert.equal(tok.eosId, undefined);
});

test('the base knows its pretraining ops and not the task ops', async () => {
  await initEngine('wasm', { quiet: true });
  const model = await loadBaseModel(BASE);
  const score = (op: (typeof BASE_OPS)[number], n: number) => greedyExactMatch(generate(op, n, 4242), model).accuracy;
  // The README's claim: 100 % exact match on unseen inputs of its pretraining ops.
  for (const op of BASE_OPS) assert.equal(score(op, 40), 1, `base op ${op.name}`);
  for (const op of TASK_OPS) assert.ok(score(op, 24) <= 0.05, `task op ${op.name}`);
  // The format is shared: a task prompt gets a well-formed answer of the right length, just the wrong rule.
  const [ex] = generate(TASK_OPS[0], 1, 1);
  const out = greedyExactMatch([makeExample(TASK_OPS[0], ex.prompt.split(':')[1].slice(0, -1))], model);
  assert.equal(out.samples[0].got.length, out.samples[0].expected.length);
});
