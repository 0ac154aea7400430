// The committed demo base model (demo/base): the engine reads it exactly as the pretraining code
// wrote it (two independent forwards agree), and it is what the demo claims — good at the ops it
// was pretrained on, poor at the held-out task ops, on inputs it never saw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { loadBaseModel } from '../../shared/train/load.ts';
import { loadTokenizer } from '../../shared/data/tokenizer.ts';
import { loadBase } from '../../demo/pretrain.ts';
import { forward } from '../../demo/tiny-llama.ts';
import { BASE_OPS, TASK_OPS, generate, makeExample } from '../../demo/tasks.ts';
import { encodeBytes } from '../../demo/byte-tokenizer.ts';
import { engineLastLogits } from '../../demo/engine-score.ts';
import { greedyExactMatch } from '../../demo/score.ts';

const BASE = new URL('../../demo/base', import.meta.url).pathname;

test('the engine and the pretraining forward give the same logits for the committed base', async () => {
  await initEngine('wasm', { quiet: true });
  const engine = await loadBaseModel(BASE);
  const mine = loadBase(BASE);
  const rows = ['rev:abcdef=fedcba\n', 'up:xyzzy=XYZZY\n'.padEnd(18, 'q')].map(encodeBytes);
  const a = tf.tidy(() => engine.forward(tf.tensor2d(rows, [2, rows[0].length], 'int32')).dataSync() as Float32Array);
  const b = tf.tidy(() => forward(mine.config, mine.params, rows).dataSync() as Float32Array);
  assert.equal(a.length, b.length);
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxAbs = Math.max(maxAbs, Math.abs(b[i]));
  }
  assert.ok(maxDiff < 1e-3 * Math.max(1, maxAbs), `max |Δlogit| ${maxDiff} (max |logit| ${maxAbs})`);
  for (const v of mine.params.values()) v.dispose();
});

test('the tokenizer shipped with the base maps bytes to their own ids, with no specials', async () => {
  const tok = await loadTokenizer(BASE, 256);
  assert.deepEqual(tok.encode('rotup:abc=BCA\n'), encodeBytes('rotup:abc=BCA\n'));
  assert.equal(tok.bosId, undefined);
  assert.equal(tok.eosId, undefined);
});

test('the base knows its pretraining ops and not the task ops', async () => {
  await initEngine('wasm', { quiet: true });
  const model = await loadBaseModel(BASE);
  const score = async (op: (typeof BASE_OPS)[number]) =>
    (await greedyExactMatch(generate(op, 24, 4242), engineLastLogits(model))).accuracy;
  for (const op of BASE_OPS) assert.ok((await score(op)) >= 0.9, `base op ${op.name}`);
  for (const op of TASK_OPS) assert.ok((await score(op)) <= 0.05, `task op ${op.name}`);
  // The format is shared: a task prompt gets a well-formed answer of the right length, just the wrong rule.
  const [ex] = generate(TASK_OPS[0], 1, 1);
  const out = await greedyExactMatch([makeExample(TASK_OPS[0], ex.prompt.split(':')[1].slice(0, -1))], engineLastLogits(model));
  assert.equal(out.samples[0].got.length, out.samples[0].expected.length);
});
