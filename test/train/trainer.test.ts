// The trainer's step API: gradients vs finite differences, accumulation, CoTo's frozen layers,
// replica combination, state round trip, flat memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../shared/tensor/engine.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import type { TokenBatch } from '../../shared/model/loss.ts';
import { LlamaModel, MODULE_NAMES } from '../../shared/model/llama.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import { refLoss, lcg } from '../model/reference.ts';
import { TWO_LAYER_GQA, makeFixture, randomAdapter, refLoraOf } from '../model/fixture.ts';
import { encodeCheckpointBlob, restoreCheckpointBlob } from '../../shared/train/checkpoint.ts';
import { randomExamples, task, tinyModel, variableExamples } from './helpers.ts';

const model = await tinyModel({ layers: 3 });
const V = model.config.vocabSize;
const examples = randomExamples(32, 8, V, 11);

function randomizeB(t: AdapterTrainer, seed: number) {
  const a = t.getAdapter();
  const rng = new SplitMix32(seed);
  for (const m of a.modules.values()) for (let i = 0; i < m.b.length; i++) m.b[i] = (rng.uniform() - 0.5) * 0.5;
  t.setAdapter(a, { resetMoments: true });
}

test('gradSums equal float64 central finite differences of the independent reference (every module, A and B)', () => {
  // A random adapter with B ≠ 0 on every module, variable-length examples with prompt masks (so
  // padding, truncation and masked targets all occur), plain LoRA so every layer has gradients.
  const fx = makeFixture(TWO_LAYER_GQA, 31);
  const fxModel = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, [...MODULE_NAMES], 2, 4, 6);
  const data = variableExamples(12, 3, 11, fx.config.vocabSize, 5);
  const t = AdapterTrainer.create({
    model: fxModel,
    task: task({ coto: null, training: { batchSize: 4, seqLen: 8 } }),
    examples: data,
    adapter,
  });
  const before = t.state();
  const g = t.computeGradients(0);
  // The batch it used: rewind the data cursor and read it again.
  t.restore(before);
  const batch = (t as unknown as { data: { next(): TokenBatch } }).data.next();
  t.dispose();
  const T = batch.seqLen;
  const ids = Array.from({ length: batch.batchSize }, (_, r) =>
    Array.from(batch.inputIds.subarray(r * T, (r + 1) * T)),
  );
  const mask = Array.from({ length: batch.batchSize }, (_, r) =>
    Array.from(batch.targetMask.subarray(r * T, (r + 1) * T)),
  );
  const tokens = mask.flat().reduce((x, y) => x + y, 0);
  assert.equal(g.tokens, tokens);
  assert.ok(tokens < batch.batchSize * (T - 1), 'the batch has masked or padded targets');

  const ref = refLoraOf(adapter);
  const lossSum = () => refLoss(fx.ref, fx.refWeights, ids, mask, ref) * tokens;
  assert.ok(Math.abs(g.lossSum - lossSum()) < 1e-4 * lossSum(), `loss sum ${g.lossSum} vs reference ${lossSum()}`);
  const rand = lcg(12);
  const h = 1e-5;
  const checks: Array<{ where: string; got: number; fd: number }> = [];
  for (const slot of t.layout.slots) {
    const m = ref.get(slot.path)!;
    for (const [which, arr, base] of [
      ['A', m.a, slot.offset],
      ['B', m.b, slot.offset + slot.aLength],
    ] as const) {
      for (let k = 0; k < 2; k++) {
        const i = Math.floor(rand() * arr.length);
        const saved = arr[i];
        arr[i] = saved + h;
        const up = lossSum();
        arr[i] = saved - h;
        const down = lossSum();
        arr[i] = saved;
        checks.push({ where: `${slot.path}.${which}[${i}]`, got: g.gradSums[base + i], fd: (up - down) / (2 * h) });
      }
    }
  }
  const scale = Math.max(...checks.map((c) => Math.abs(c.fd)));
  const tol = (fd: number) => 1e-3 * Math.abs(fd) + 1e-4 * scale;
  for (const c of checks) assert.ok(Math.abs(c.got - c.fd) <= tol(c.fd), `${c.where}: grad ${c.got}, fd ${c.fd}`);
  // The check has teeth: a zero or sign-flipped gradient would fail on (nearly) every entry.
  const decisive = checks.filter((c) => Math.abs(c.fd) > 2 * tol(c.fd)).length;
  assert.ok(decisive >= 0.9 * checks.length, `${decisive} of ${checks.length} entries tell a zero gradient apart`);
  assert.equal(checks.length, 4 * 7 * fx.config.numHiddenLayers);
  fxModel.dispose();
});

test('gradient accumulation: 2 micro-batches of 4 give the gradient sums of 1 batch of 8', () => {
  const one = AdapterTrainer.create({
    model,
    task: task({ coto: null, training: { batchSize: 8, gradAccum: 1 } }),
    examples,
  });
  const two = AdapterTrainer.create({
    model,
    task: task({ coto: null, training: { batchSize: 4, gradAccum: 2 } }),
    examples,
  });
  randomizeB(one, 3);
  randomizeB(two, 3);
  const g1 = one.computeGradients(0);
  const g2 = two.computeGradients(0);
  assert.equal(g1.tokens, g2.tokens);
  assert.ok(Math.abs(g1.lossSum - g2.lossSum) < 1e-3 * Math.abs(g1.lossSum));
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < g1.gradSums.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(g1.gradSums[i] - g2.gradSums[i]));
    maxAbs = Math.max(maxAbs, Math.abs(g1.gradSums[i]));
  }
  assert.ok(maxAbs > 0 && maxDiff <= 1e-4 * maxAbs, `max diff ${maxDiff} (max |g| ${maxAbs})`);
  one.dispose();
  two.dispose();
});

test('CoTo: inactive layers get no gradient, and their weights, moments and Adam steps stay unchanged', () => {
  const t = AdapterTrainer.create({
    model,
    task: task({ training: { weightDecay: 0.1, steps: 100 }, coto: { pStart: 0.3 } }),
    examples,
  });
  // Find a step with a mixed mask.
  let step = 0;
  while (t.activeLayersAt(step).every(Boolean)) step++;
  for (let s = 0; s < step; s++) t.trainStep();
  const mask = t.activeLayersAt(step);
  assert.ok(mask.some(Boolean) && !mask.every(Boolean));
  const before = t.state();
  const r = t.trainStep();
  assert.deepEqual(r.activeLayers, mask);
  const after = t.state();
  let activeChanged = false;
  t.layout.slots.forEach((s, i) => {
    const range = [s.offset, s.offset + s.aLength + s.bLength] as const;
    const same = (x: Float32Array, y: Float32Array) => x.subarray(...range).every((v, j) => v === y[range[0] + j]);
    if (mask[s.layer]) {
      assert.equal(after.moduleSteps[i], before.moduleSteps[i] + 1);
      activeChanged ||= !same(before.params, after.params);
    } else {
      assert.ok(same(before.params, after.params), `${s.path}: weights moved while inactive`);
      assert.ok(same(before.expAvg, after.expAvg), `${s.path}: first moment moved while inactive`);
      assert.ok(same(before.expAvgSq, after.expAvgSq), `${s.path}: second moment moved while inactive`);
      assert.equal(after.moduleSteps[i], before.moduleSteps[i]);
    }
  });
  assert.ok(activeChanged, 'active layers should move');
  // The runtime's variables hold the same values as the trainer's parameters.
  const fromVars = t.runtime.toAdapter();
  const flat = t.layout.flatten(fromVars);
  assert.ok(flat.every((v, i) => v === after.params[i]));
  // Gradients of an inactive layer are exactly zero.
  const g = t.computeGradients(t.step);
  t.layout.slots.forEach((s) => {
    if (!g.activeLayers[s.layer])
      assert.ok(g.gradSums.subarray(s.offset, s.offset + s.aLength + s.bLength).every((v) => v === 0));
  });
  assert.equal(t.activation.steps, step + 1);
  t.dispose();
});

test('two replicas combined (Σ gradSums / Σ tokens) train like one process on both shards at once', () => {
  // 8 variable-length examples: with 2 replicas and batch 4 each replica's shard is one batch, so
  // every step the replicas together see exactly the 8 examples one process with batch 8 sees.
  // Different token counts per replica tell Σ sums / Σ tokens apart from a mean of replica means.
  const data = variableExamples(8, 3, 11, V, 21);
  const spec = task({ training: { steps: 10, batchSize: 4 } });
  const reps = [0, 1].map((replica) =>
    AdapterTrainer.create({ model, task: spec, examples: data, replica, replicas: 2 }),
  );
  const single = AdapterTrainer.create({
    model,
    task: task({ training: { steps: 10, batchSize: 8 } }),
    examples: data,
  });
  const init = single.state().params;
  let meanOfMeansGap = 0;
  for (let step = 0; step < 5; step++) {
    const gs = reps.map((r) => r.computeGradients(step));
    const one = single.computeGradients(step);
    assert.notEqual(gs[0].tokens, gs[1].tokens, `step ${step}: replicas should hold different token counts`);
    assert.equal(gs[0].tokens + gs[1].tokens, one.tokens);
    const sum = new Float64Array(one.gradSums.length);
    for (const g of gs) for (let i = 0; i < sum.length; i++) sum[i] += g.gradSums[i];
    let diff = 0;
    let size = 0;
    for (let i = 0; i < sum.length; i++) {
      diff = Math.max(diff, Math.abs(sum[i] - one.gradSums[i]));
      size = Math.max(size, Math.abs(one.gradSums[i]));
      const meanOfMeans = (gs[0].gradSums[i] / gs[0].tokens + gs[1].gradSums[i] / gs[1].tokens) / 2;
      meanOfMeansGap = Math.max(meanOfMeansGap, Math.abs(meanOfMeans - one.gradSums[i] / one.tokens) * one.tokens);
    }
    assert.ok(size > 0 && diff <= 1e-5 * size, `step ${step}: Σ replica sums vs one process: ${diff} (max ${size})`);
    const total = Float32Array.from(sum);
    reps.forEach((r) => r.applyGradients(total, gs[0].tokens + gs[1].tokens, step));
    single.applyGradients(one.gradSums, one.tokens, step);
  }
  const [a, b] = reps.map((r) => r.state().params);
  const c = single.state().params;
  assert.ok(
    a.every((v, i) => v === b[i]),
    'replicas diverged',
  );
  const moved = c.reduce((m, v, i) => Math.max(m, Math.abs(v - init[i])), 0);
  const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - c[i])), 0);
  assert.ok(moved > 0 && diff <= 1e-5 * Math.max(1, moved), `replicas vs one process after 5 steps: ${diff}`);
  assert.ok(meanOfMeansGap > 1e-3, 'a mean of replica means would be a different gradient here');
  [...reps, single].forEach((r) => r.dispose());
});

test('state() / restore() continue bit-exactly', () => {
  const spec = task({ training: { steps: 12, lr: 5e-3, warmupSteps: 2 }, lora: { loraDropout: 0.1 } });
  const a = AdapterTrainer.create({ model, task: spec, examples });
  for (let i = 0; i < 4; i++) a.trainStep();
  const saved = a.state();
  for (let i = 0; i < 4; i++) a.trainStep();
  const b = AdapterTrainer.create({ model, task: spec, examples });
  b.restore(saved);
  for (let i = 0; i < 4; i++) b.trainStep();
  const pa = a.state();
  const pb = b.state();
  assert.equal(pb.step, 8);
  assert.deepEqual(pb.cursor, pa.cursor);
  assert.ok(pa.params.every((v, i) => v === pb.params[i]));
  assert.ok(pa.expAvgSq.every((v, i) => v === pb.expAvgSq[i]));
  assert.deepEqual(pa.activation, pb.activation);
  a.dispose();
  b.dispose();
});

test('a checkpoint blob (the cluster container) restores a fresh trainer that continues bit-exactly', () => {
  const spec = task({ training: { steps: 12, lr: 5e-3, warmupSteps: 2 }, lora: { loraDropout: 0.1 } });
  const a = AdapterTrainer.create({ model, task: spec, examples });
  for (let i = 0; i < 5; i++) a.trainStep();
  const blob = encodeCheckpointBlob(a);
  for (let i = 0; i < 4; i++) a.trainStep();
  const b = AdapterTrainer.create({ model, task: spec, examples });
  restoreCheckpointBlob(blob, b, 'blob');
  assert.equal(b.step, 5);
  for (let i = 0; i < 4; i++) b.trainStep();
  const [pa, pb] = [a.state(), b.state()];
  assert.deepEqual(pb.cursor, pa.cursor);
  assert.deepEqual(pb.moduleSteps, pa.moduleSteps);
  for (const k of ['params', 'expAvg', 'expAvgSq'] as const)
    assert.ok(
      pa[k].every((v, i) => v === pb[k][i]),
      k,
    );
  assert.deepEqual(pb.activation, pa.activation);
  // A blob of another task's shapes, or not a checkpoint at all, is refused with the source named.
  const other = AdapterTrainer.create({ model, task: task({ lora: { r: 2 } }), examples });
  assert.throws(
    () => restoreCheckpointBlob(blob, other, 'ckpt-x'),
    /ckpt-x: "params\..*" holds \d+ values, expected \d+/,
  );
  assert.throws(() => restoreCheckpointBlob(new Uint8Array(8), other, 'ckpt-y'), /ckpt-y/);
  [a, b, other].forEach((t) => t.dispose());
});

test('memory stays flat: the same number of tensors after step 10 and step 60', () => {
  const t = AdapterTrainer.create({
    model,
    task: task({ training: { steps: 60, batchSize: 2, gradAccum: 2 }, lora: { loraDropout: 0.1 } }),
    examples,
  });
  for (let i = 0; i < 10; i++) t.trainStep();
  t.evaluate({ examples, maxBatches: 1 });
  const at10 = tf.memory().numTensors;
  const bytes10 = tf.memory().numBytes;
  for (let i = 10; i < 60; i++) t.trainStep();
  t.evaluate({ examples, maxBatches: 1 });
  assert.equal(tf.memory().numTensors, at10);
  assert.equal(tf.memory().numBytes, bytes10);
  t.dispose();
});
