// lora.sparsity and lora.split in the trainer: exact pruning ratios that hold through training (read
// back from the saved PEFT files), magnitude masks against an independent sort, replicas that agree,
// idle rank groups that do not move, and the merged LoRA against the sum of its groups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../../shared/tensor/engine.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { readPeftAdapter, writePeftAdapter } from '../../shared/formats/peft.ts';
import { activeGroupsAt } from '../../shared/lora/split.ts';
import { modulePath } from '../../shared/model/llama.ts';
import type { LoraSparsity } from '../../shared/lora/types.ts';
import { randomExamples, task, tinyModel } from '../train/helpers.ts';

const model = await tinyModel({ layers: 2 });
const V = model.config.vocabSize;
const examples = randomExamples(32, 8, V, 11);
const targets = ['q_proj', 'v_proj', 'down_proj'];

const sparse = (sparsity: LoraSparsity, over: { replica?: number; replicas?: number } = {}) =>
  AdapterTrainer.create({
    model,
    task: task({ coto: null, lora: { r: 8, targetModules: targets, sparsity }, training: { lr: 1e-2 } }),
    examples,
    ...over,
  });

const zeros = (a: Float32Array) => a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);

for (const criterion of ['snip', 'magnitude', 'random'] as const) {
  test(`sparsity ${criterion}: exactly round(ratio·n) zeros per factor, held through training, in the saved files`, async () => {
    const ratio = 0.6;
    const t = sparse({ ratio, criterion });
    const pruned = t.frozen!.pruned!;
    for (let s = 0; s < 15; s++) t.trainStep();
    const dir = mkdtempSync(join(tmpdir(), 'chorus-sparse-'));
    await writePeftAdapter(dir, t.getAdapter());
    const saved = await readPeftAdapter(dir);
    // An ordinary LoRA file: no method settings in adapter_config.json (docs/FORMATS.md).
    const config = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    assert.deepEqual(
      Object.keys(config).filter((k) => /sparsity|split|sample|rdrop|chorus/i.test(k)),
      [],
    );
    assert.equal(saved.modules.size, t.layout.slots.length);
    for (const s of t.layout.slots) {
      const m = saved.modules.get(s.path)!;
      for (const [values, at] of [
        [m.a, s.offset],
        [m.b, s.offset + s.aLength],
      ] as const) {
        const k = Math.round(ratio * values.length);
        let maskCount = 0;
        for (let i = 0; i < values.length; i++) {
          if (pruned[at + i]) {
            maskCount++;
            assert.equal(values[i], 0, `${s.path}: pruned entry ${i} is ${values[i]} after training`);
          }
        }
        assert.equal(maskCount, k, `${s.path}: ${maskCount} entries pruned, expected ${k}`);
        // Kept entries trained away from zero (B starts at zero); one can stay at zero only when the
        // mask cut it off from every gradient (e.g. B's column of a fully pruned row of A).
        assert.ok(zeros(values) - k <= 0.05 * values.length, `${s.path}: ${zeros(values)} zeros, ${k} pruned`);
      }
    }
    t.dispose();
  });
}

test('sparsity magnitude keeps the largest |A| entries (independent sort); the criteria prune differently', () => {
  const t = sparse({ ratio: 0.5, criterion: 'magnitude' });
  const dense = AdapterTrainer.create({
    model,
    task: task({ coto: null, lora: { r: 8, targetModules: targets } }),
    examples,
  });
  const init = dense.state().params;
  const pruned = t.frozen!.pruned!;
  for (const s of t.layout.slots) {
    const a = Array.from(init.subarray(s.offset, s.offset + s.aLength), (v, i) => ({ v: Math.abs(v), i }));
    a.sort((x, y) => y.v - x.v);
    const keep = new Set(a.slice(0, a.length - Math.round(0.5 * a.length)).map((e) => e.i));
    for (let i = 0; i < s.aLength; i++) assert.equal(pruned[s.offset + i] === 0, keep.has(i), `${s.path} A[${i}]`);
  }
  const snip = sparse({ ratio: 0.5, criterion: 'snip' }).frozen!.pruned!;
  const random = sparse({ ratio: 0.5, criterion: 'random' }).frozen!.pruned!;
  const differ = (x: Uint8Array, y: Uint8Array) => x.some((v, i) => v !== y[i]);
  assert.ok(differ(snip, pruned) && differ(snip, random) && differ(random, pruned));
  t.dispose();
  dense.dispose();
});

test('sparsity snip: the replicas of a data-parallel task prune the same entries', () => {
  const a = sparse({ ratio: 0.3, criterion: 'snip' }, { replica: 0, replicas: 2 });
  const b = sparse({ ratio: 0.3, criterion: 'snip' }, { replica: 1, replicas: 2 });
  assert.deepEqual(a.frozen!.pruned, b.frozen!.pruned);
  a.dispose();
  b.dispose();
});

const splitTrainer = () =>
  AdapterTrainer.create({
    model,
    task: task({
      coto: null,
      lora: { r: 8, targetModules: targets, split: { groups: 4, active: 2 } },
      training: { lr: 1e-2 },
    }),
    examples,
  });

test('split: the groups not drawn for a step keep their values and Adam moments; the drawn ones move', () => {
  const t = splitTrainer();
  for (let step = 0; step < 6; step++) {
    const before = t.state();
    const on = activeGroupsAt({ groups: 4, active: 2 }, (t as any).frozen.split.seed, step);
    assert.equal(on.filter(Boolean).length, 2);
    t.trainStep();
    const after = t.state();
    for (const s of t.layout.slots) {
      const inF = s.aLength / 8;
      const outF = s.bLength / 8;
      let moved = 0;
      for (let j = 0; j < 8; j++) {
        const entries = [
          ...Array.from({ length: inF }, (_, i) => s.offset + j * inF + i),
          ...Array.from({ length: outF }, (_, o) => s.offset + s.aLength + o * 8 + j),
        ];
        for (const e of entries) {
          if (on[Math.floor(j / 2)]) {
            if (after.params[e] !== before.params[e]) moved++;
            continue;
          }
          assert.equal(after.params[e], before.params[e], `step ${step} ${s.path} rank ${j}: idle entry moved`);
          assert.equal(after.expAvg[e], before.expAvg[e], `step ${step} ${s.path} rank ${j}: moment moved`);
          assert.equal(after.expAvgSq[e], before.expAvgSq[e]);
        }
      }
      assert.ok(moved > 0, `step ${step} ${s.path}: the active groups did not train`);
    }
  }
  t.dispose();
});

test('split: the merged LoRA (all groups, as saved) equals the sum of its groups, each a rank-masked pass rescaled by groups/active', () => {
  const t = splitTrainer();
  for (let s = 0; s < 8; s++) t.trainStep();
  const adapter = t.getAdapter();
  const rng = new SplitMix32(3);
  const N = 5;
  for (const name of ['q_proj', 'down_proj'] as const) {
    const path = modulePath(1, name);
    const m = adapter.modules.get(path)!;
    const x = Float32Array.from({ length: N * m.inFeatures }, () => rng.normal());
    const xt = tf.tensor2d(x, [N, m.inFeatures]);
    // Float64 dense reference: s·x·(B A)ᵀ.
    const ref = new Float64Array(N * m.outFeatures);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < m.outFeatures; o++) {
        let acc = 0;
        for (let j = 0; j < m.rank; j++) {
          let ax = 0;
          for (let i = 0; i < m.inFeatures; i++) ax += m.a[j * m.inFeatures + i] * x[n * m.inFeatures + i];
          acc += m.b[o * m.rank + j] * ax;
        }
        ref[n * m.outFeatures + o] = m.scaling * acc;
      }
    const full = t.runtime.delta(1, name, xt, { training: false })!.dataSync();
    const sum = new Float64Array(ref.length);
    for (let g = 0; g < 4; g++) {
      t.runtime.setActiveGroups([0, 1, 2, 3].map((h) => h === g));
      // One group of 4 on: the training pass rescales it by 4 (inverted dropout).
      const part = t.runtime.delta(1, name, xt, { training: true })!.dataSync();
      part.forEach((v, i) => (sum[i] += v / 4));
    }
    t.runtime.setActiveGroups(null);
    let scale = 0;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    assert.ok(scale > 1e-4, 'the adapter trained');
    for (let i = 0; i < ref.length; i++) {
      assert.ok(Math.abs(full[i] - ref[i]) <= 1e-5 * scale, `full ${i}: ${full[i]} vs ${ref[i]}`);
      assert.ok(Math.abs(sum[i] - ref[i]) <= 1e-5 * scale, `Σ groups ${i}: ${sum[i]} vs ${ref[i]}`);
    }
    xt.dispose();
  }
  t.dispose();
});

test('split draws: a fixed number of groups per step, a function of (seed, step) only, every group used', () => {
  const split = { groups: 5, active: 2 };
  const seen = new Array(5).fill(0);
  for (let step = 0; step < 200; step++) {
    const on = activeGroupsAt(split, 9, step);
    assert.deepEqual(on, activeGroupsAt(split, 9, step));
    assert.equal(on.filter(Boolean).length, 2);
    on.forEach((v, g) => (seen[g] += v ? 1 : 0));
  }
  for (const c of seen) assert.ok(c > 40 && c < 120, `group use counts ${seen}`);
});

test('sparsity snip refuses streamed base weights by name; magnitude runs there', async () => {
  const { makeLlamaConfig } = await import('../../shared/model/config.ts');
  const { LlamaModel, initRandomWeights } = await import('../../shared/model/llama.ts');
  const config = makeLlamaConfig({
    hiddenSize: 16,
    numHiddenLayers: 2,
    numAttentionHeads: 2,
    numKeyValueHeads: 1,
    vocabSize: 32,
    intermediateSize: 32,
  });
  const streamed = LlamaModel.fromTensors(config, initRandomWeights(config, 7), 'tiny', { baseWeights: 'streamed' });
  const make = (criterion: 'snip' | 'magnitude') =>
    AdapterTrainer.create({
      model: streamed,
      task: task({ coto: null, lora: { r: 8, targetModules: targets, sparsity: { ratio: 0.5, criterion } } }),
      examples,
    });
  assert.throws(() => make('snip'), /criterion snip .* needs resident base weights/);
  const t = make('magnitude');
  t.trainStep();
  t.dispose();
  streamed.dispose();
});
