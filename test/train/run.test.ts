// The local run behind `chorus train`, and `chorus eval` / `chorus export`, on a tiny model
// written to disk in the test (random weights + byte tokenizer).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../../shared/tensor/engine.ts';
import { llamaConfigToJson, makeLlamaConfig } from '../../shared/model/config.ts';
import { initRandomWeights } from '../../shared/model/llama.ts';
import { writeHfModelDir } from '../../shared/formats/hf-model.ts';
import { writeByteTokenizer } from '../../shared/data/tokenizer.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { runLocalTraining } from '../../shared/train/run.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { exportMerged, foldAdapter } from '../../shared/train/export.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';

const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'chorus-run-'));
after(() => rmSync(dir, { recursive: true, force: true }));
await initEngine('wasm', { quiet: true });
const config = makeLlamaConfig({
  hiddenSize: 16,
  numHiddenLayers: 3,
  numAttentionHeads: 2,
  numKeyValueHeads: 1,
  vocabSize: 258,
  intermediateSize: 32,
});
await writeHfModelDir(join(dir, 'base'), llamaConfigToJson(config), initRandomWeights(config, 5));
await writeByteTokenizer(join(dir, 'base'), 258);
const rng = new SplitMix32(3);
const word = () => Array.from({ length: 3 }, () => 'abcdef'[rng.next() % 6]).join('');
const lines = (n: number) =>
  Array.from({ length: n }, () => {
    const w = word();
    return JSON.stringify({ prompt: `${w}=`, completion: [...w].reverse().join('') });
  }).join('\n') + '\n';
writeFileSync(join(dir, 'train.jsonl'), lines(40));
writeFileSync(join(dir, 'eval.jsonl'), lines(10));
const spec = (steps: number, extra = '') => `
base_model: ./base
seed: 4
lora: { r: 4, alpha: 8, dropout: 0.1, target_modules: [q_proj, v_proj, down_proj] }
coto: { enabled: true, p_start: 0.2 }
training: { steps: ${steps}, batch_size: 4, grad_accum: 2, seq_len: 10, lr: 1e-2, warmup_steps: 2,
            weight_decay: 0.01, eval_every: 4, eval_batches: 1, checkpoint_every: 5, keep_checkpoints: 2, log_every: 1${extra} }
data: { train: train.jsonl, eval: eval.jsonl }
`;
writeFileSync(join(dir, 'job.yaml'), spec(12));

const trainLines = (run: string) =>
  readFileSync(join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .map(({ elapsed_s, tokens_per_s, ...rest }) => rest);

test('resume ≡ uninterrupted: 12 steps == 7 steps + --resume to 12 (bitwise adapter, moments, metrics)', async () => {
  const full = join(dir, 'runs/full');
  const split = join(dir, 'runs/split');
  const r1 = await runLocalTraining({ specPath: join(dir, 'job.yaml'), outDir: full });
  assert.equal(r1.steps, 12);
  assert.equal(r1.stopped, false);
  assert.deepEqual(readdirSync(join(full, 'checkpoints')).sort(), ['step-10', 'step-12'], 'keeps the 2 newest');
  const r2 = await runLocalTraining({ specPath: join(dir, 'job.yaml'), outDir: split, stopAtStep: 7 });
  assert.equal(r2.steps, 7);
  assert.equal(r2.stopped, true);
  assert.ok(existsSync(join(split, 'checkpoints/step-7/trainer_state.json')));
  assert.ok(existsSync(join(split, 'checkpoints/step-5/optimizer.safetensors')));
  await assert.rejects(
    runLocalTraining({ specPath: join(dir, 'job.yaml'), outDir: split }),
    /already holds checkpoints.*--resume/,
  );
  const r3 = await runLocalTraining({ specPath: join(dir, 'job.yaml'), outDir: split, resume: true });
  assert.equal(r3.startStep, 7);
  assert.equal(r3.steps, 12);
  for (const f of [
    'adapter_model.safetensors',
    'checkpoints/step-12/optimizer.safetensors',
    'checkpoints/step-12/adapter_model.safetensors',
  ]) {
    assert.ok(readFileSync(join(full, f)).equals(readFileSync(join(split, f))), `${f} differs`);
  }
  const stateOf = (run: string) =>
    JSON.parse(readFileSync(join(run, 'checkpoints/step-12/trainer_state.json'), 'utf8'));
  assert.deepEqual(stateOf(split), stateOf(full));
  assert.deepEqual(trainLines(split), trainLines(full));
  // CoTo really masked layers at the start: some early step ran with fewer than all 3 layers.
  const early = trainLines(full).filter((m) => m.type === 'train' && m.step <= 4);
  assert.ok(
    early.some((m) => m.active_layers.length < 3),
    JSON.stringify(early.map((m) => m.active_layers)),
  );
  assert.ok(trainLines(full).some((m) => m.type === 'eval' && m.step === 12));
});

test('--resume refuses a changed job and names what changed', async () => {
  writeFileSync(join(dir, 'job-changed.yaml'), spec(12).replace('lr: 1e-2', 'lr: 2e-2'));
  await assert.rejects(
    runLocalTraining({ specPath: join(dir, 'job-changed.yaml'), outDir: join(dir, 'runs/split'), resume: true }),
    /--resume needs the same job.*changed: training/,
  );
});

test('a multi-task spec needs --task; --task picks one and applies its overrides', async () => {
  writeFileSync(
    join(dir, 'multi.yaml'),
    `
base_model: ./base
training: { steps: 2, batch_size: 2, seq_len: 10, log_every: 1, eval_every: 0, checkpoint_every: 0 }
tasks:
  - { name: one, data: { train: train.jsonl } }
  - { name: two, data: { train: train.jsonl }, training: { steps: 3 }, lora: { r: 2 } }
`,
  );
  await assert.rejects(
    runLocalTraining({ specPath: join(dir, 'multi.yaml'), outDir: join(dir, 'runs/multi') }),
    /2 tasks \(one, two\).*--task NAME/,
  );
  const r = await runLocalTraining({ specPath: join(dir, 'multi.yaml'), outDir: join(dir, 'runs/multi'), task: 'two' });
  assert.equal(r.steps, 3);
  const adapter = await readPeftAdapter(join(dir, 'runs/multi'));
  assert.equal(adapter.config.r, 2);
  assert.ok(existsSync(join(dir, 'runs/multi/checkpoints/step-3')));
});

test('foldAdapter adds s·B·A exactly (float64 reference)', () => {
  const r = new SplitMix32(8);
  const w = Float32Array.from({ length: 5 * 7 }, () => r.uniform() - 0.5);
  const a = Float32Array.from({ length: 3 * 7 }, () => r.uniform() - 0.5);
  const b = Float32Array.from({ length: 5 * 3 }, () => r.uniform() - 0.5);
  const tensors = new Map([['model.layers.0.self_attn.q_proj.weight', { shape: [5, 7], data: w.slice() }]]);
  const adapter: LoraAdapter = {
    config: { r: 3, loraAlpha: 6, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
    modules: new Map([
      ['model.layers.0.self_attn.q_proj', { a, b, rank: 3, inFeatures: 7, outFeatures: 5, scaling: 2 }],
    ]),
  };
  foldAdapter(tensors, adapter);
  const got = tensors.get('model.layers.0.self_attn.q_proj.weight')!.data;
  for (let o = 0; o < 5; o++)
    for (let i = 0; i < 7; i++) {
      let d = 0;
      for (let k = 0; k < 3; k++) d += b[o * 3 + k] * a[k * 7 + i];
      assert.equal(got[o * 7 + i], Math.fround(w[o * 7 + i] + 2 * d));
    }
  const bad = new Map([['model.layers.0.self_attn.q_proj.weight', { shape: [7, 5], data: w.slice() }]]);
  assert.throws(
    () => foldAdapter(bad, adapter, 'runs/x'),
    /runs\/x: module model\.layers\.0\.self_attn\.q_proj is 5×7, the base weight .* is \[7, 5\]/,
  );
});

test('export: the merged model without adapter evaluates like base + adapter; chorus eval prints one JSON line', async () => {
  const run = join(dir, 'runs/full');
  const merged = join(dir, 'merged');
  await exportMerged(join(dir, 'base'), run, merged);
  assert.ok(existsSync(join(merged, 'tokenizer.json')) && existsSync(join(merged, 'tokenizer_config.json')));
  const base = await loadBaseModel(join(dir, 'base'));
  const folded = await loadBaseModel(merged);
  const loader = new DataLoader(join(dir, 'base'), 258);
  const examples = await loader.load(join(dir, 'eval.jsonl'));
  const opts = { batchSize: 4, seqLen: 10, padId: await loader.padId() };
  const lora = LoraRuntime.fromAdapter(base, await readPeftAdapter(run));
  const withAdapter = evaluateExamples(base, lora, examples, opts);
  const alone = evaluateExamples(base, undefined, examples, opts);
  const exported = evaluateExamples(folded, undefined, examples, opts);
  assert.ok(Math.abs(withAdapter.loss - alone.loss) > 1e-4, 'the adapter should change the loss');
  assert.ok(
    Math.abs(exported.loss - withAdapter.loss) <= 1e-5 * withAdapter.loss,
    `${exported.loss} vs ${withAdapter.loss}`,
  );
  assert.equal(exported.accuracy, withAdapter.accuracy);
  assert.equal(exported.tokens, withAdapter.tokens);
  lora.dispose();
  base.dispose();
  folded.dispose();

  const cli = spawnSync(
    process.execPath,
    [
      join(root, 'bin/chorus.mjs'),
      'eval',
      '--model',
      merged,
      '--data',
      join(dir, 'eval.jsonl'),
      '--backend',
      'wasm',
      '--batch-size',
      '4',
      '--seq-len',
      '10',
    ],
    { encoding: 'utf8' },
  );
  assert.equal(cli.status, 0, cli.stderr);
  const out = cli.stdout.trim().split('\n');
  assert.equal(out.length, 1);
  const j = JSON.parse(out[0]);
  assert.deepEqual(Object.keys(j), ['loss', 'perplexity', 'tokens', 'accuracy']);
  assert.ok(Math.abs(j.loss - exported.loss) < 1e-6);
  assert.ok(Math.abs(j.perplexity - Math.exp(j.loss)) < 1e-9 * j.perplexity);
  assert.equal(j.tokens, exported.tokens);
  assert.equal(j.accuracy, exported.accuracy);
});

test('chorus train: SIGINT finishes the step, checkpoints, writes the adapter and exits 130', async () => {
  writeFileSync(join(dir, 'job-long.yaml'), spec(100000));
  const out = join(dir, 'runs/sig');
  const child = spawn(
    process.execPath,
    [join(root, 'bin/chorus.mjs'), 'train', join(dir, 'job-long.yaml'), '--out', out, '--backend', 'wasm'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      if (/step 3\/100000/.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    child.on('exit', (c) => resolve(c));
  });
  assert.equal(code, 130, stderr);
  const summary = JSON.parse(stdout.trim());
  assert.equal(summary.stopped, true);
  assert.ok(summary.steps >= 3 && summary.steps < 100000);
  const ckpts = readdirSync(join(out, 'checkpoints'));
  assert.ok(ckpts.includes(`step-${summary.steps}`), ckpts.join(','));
  assert.ok(existsSync(join(out, 'adapter_model.safetensors')));
  assert.match(stderr, /SIGINT: finishing the current step/);
});

test('chorus train plans before loading: a step that cannot fit, or seq_len past the positions, is one clear error', async () => {
  const logs: string[] = [];
  const r = await runLocalTraining({
    specPath: join(dir, 'job.yaml'),
    outDir: join(dir, 'runs/plan'),
    stopAtStep: 1,
    log: (s) => logs.push(s),
  });
  assert.equal(r.steps, 1);
  assert.ok(
    logs.some((l) => /^memory plan: gradient_checkpointing auto→false, base_weights auto→resident/.test(l)),
    logs.join('\n'),
  );
  writeFileSync(
    join(dir, 'huge.yaml'),
    spec(2).replace('batch_size: 4', 'batch_size: 4096').replace('seq_len: 10', 'seq_len: 256'),
  );
  await assert.rejects(
    runLocalTraining({ specPath: join(dir, 'huge.yaml'), outDir: join(dir, 'runs/huge') }),
    /training: batch_size 4096 × seq_len 256 .*needs about [\d.]+ GiB of engine memory, over the wasm heap \(4\.00 GiB.*lower training\.batch_size/,
  );
  writeFileSync(join(dir, 'long.yaml'), spec(2).replace('seq_len: 10', 'seq_len: 4096'));
  await assert.rejects(
    runLocalTraining({ specPath: join(dir, 'long.yaml'), outDir: join(dir, 'runs/long') }),
    /training\.seq_len: 4096 exceeds the model's max_position_embeddings \(2048\)/,
  );
  assert.ok(!existsSync(join(dir, 'runs/huge/checkpoints')) && !existsSync(join(dir, 'runs/long/checkpoints')));
});
