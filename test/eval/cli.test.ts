// `chorus eval --generate` as a user runs it (a real process): exact match and edit similarity in
// the same JSON line as loss and token accuracy, on the demo base, with a pruned adapter, and the
// flag errors.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../../shared/tensor/engine.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import { ByteTokenizer } from '../../shared/data/tokenizer.ts';
import { writePeftAdapter } from '../../shared/formats/peft.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { completionItems, scoreGeneration } from '../../shared/eval/score.ts';
import { randomAdapter } from '../model/fixture.ts';

const root = new URL('../..', import.meta.url).pathname;
const base = join(root, 'demo/base');
const dir = mkdtempSync(join(tmpdir(), 'chorus-eval-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const data = join(dir, 'eval.jsonl');
// Greedy answers of the base, checked by hand: "cba", "HELLO", "xyz", "ccb".
writeFileSync(
  data,
  [
    { prompt: 'rev:abc=', completion: 'cba\n' },
    { prompt: 'up:hello=', completion: 'HELLX\n' },
    { prompt: 'copy:xyz=', completion: 'xyz\n' },
    { prompt: 'revup:abc=', completion: 'CBA\n' },
  ]
    .map((x) => JSON.stringify(x))
    .join('\n') + '\n',
);

function chorusEval(...args: string[]) {
  const r = spawnSync(
    process.execPath,
    [join(root, 'bin/chorus.mjs'), 'eval', '--model', base, '--data', data, '--backend', 'wasm', ...args],
    { encoding: 'utf8' },
  );
  return { status: r.status, stderr: r.stderr, lines: r.stdout.trim().split('\n').filter(Boolean) };
}

test('chorus eval --generate prints exact match and edit similarity beside loss and accuracy', async () => {
  const r = chorusEval('--generate', '--stop', '\\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 1);
  const j = JSON.parse(r.lines[0]);
  assert.deepEqual(Object.keys(j), [
    'loss',
    'perplexity',
    'tokens',
    'accuracy',
    'exact_match',
    'edit_similarity',
    'generated',
  ]);
  assert.equal(j.exact_match, 0.5);
  assert.ok(Math.abs(j.edit_similarity - 0.7) < 1e-12, `${j.edit_similarity}`);
  assert.equal(j.generated, 4);
  // Loss and token accuracy are the teacher-forced figures of the library, unchanged by --generate.
  await initEngine('wasm', { quiet: true });
  const model = await loadBaseModel(base);
  const examples = await new DataLoader(base, 256).load(data);
  const tf = evaluateExamples(model, undefined, examples, { batchSize: 8, seqLen: 16 });
  assert.ok(Math.abs(j.loss - tf.loss) < 1e-6);
  assert.equal(j.accuracy, tf.accuracy);
  model.dispose();
  // Without --stop the answers run to the default length (longest completion + 1) and none match.
  const noStop = JSON.parse(chorusEval('--generate').lines[0]);
  assert.equal(noStop.exact_match, 0);
});

test('chorus eval --generate with a pruned adapter equals the library with those layers off', async () => {
  await initEngine('wasm', { quiet: true });
  const model = await loadBaseModel(base);
  const adapter = randomAdapter(model.config, ['q_proj', 'v_proj', 'down_proj'], 2, 4, 9);
  await writePeftAdapter(join(dir, 'adapter'), adapter);
  const lora = LoraRuntime.fromAdapter(model, adapter);
  const tok = new ByteTokenizer(256);
  const items = completionItems(await new DataLoader(base, 256).load(data), tok, data);
  const score = (activeLayers?: boolean[]) =>
    scoreGeneration(model, items, { tokenizer: tok, maxNewTokens: 8, stop: ['\n'], lora, activeLayers });
  const pruned = score([true, false, true]);
  const full = score();
  lora.dispose();
  model.dispose();
  assert.notDeepEqual(
    pruned.outputs.map((o) => o.prediction),
    full.outputs.map((o) => o.prediction),
    'pruning layer 1 changes the answers (the test can tell)',
  );
  const args = ['--generate', '--stop', '\\n', '--max-new-tokens', '8', '--adapter', join(dir, 'adapter')];
  const cliPruned = JSON.parse(chorusEval(...args, '--adapter-layers', '0,2').lines[0]);
  const cliFull = JSON.parse(chorusEval(...args).lines[0]);
  assert.ok(Math.abs(cliPruned.edit_similarity - pruned.editSimilarity) < 1e-12);
  assert.equal(cliPruned.exact_match, pruned.exactMatch);
  assert.ok(Math.abs(cliFull.edit_similarity - full.editSimilarity) < 1e-12);
});

test('flag errors name the flag', () => {
  const stopAlone = chorusEval('--stop', '\\n');
  assert.notEqual(stopAlone.status, 0);
  assert.match(stopAlone.stderr, /--max-new-tokens and --stop need --generate/);
  const badLayer = chorusEval('--generate', '--adapter', join(dir, 'adapter'), '--adapter-layers', '0,5');
  assert.notEqual(badLayer.status, 0);
  assert.match(badLayer.stderr, /--adapter-layers: layer 5 is not a layer of the model \(0\.\.2\)/);
  const noAdapter = chorusEval('--adapter-layers', '0');
  assert.match(noAdapter.stderr, /--adapter-layers needs --adapter/);
});
