// The trainer's step API: gradients vs finite differences, accumulation, CoTo's frozen layers,
// replica combination, state round trip, flat memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../shared/tensor/engine.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { evaluate } from '../../shared/model/loss.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import { encodeCheckpointBlob, restoreCheckpointBlob } from '../../shared/train/checkpoint.ts';
import { randomExamples, task, tinyModel } from './helpers.ts';

const model = await tinyModel({ layers: 3 });
const V = model.config.vocabSize;
const examples = randomExamples(32, 8, V, 11);

function randomizeB(t: AdapterTrainer, seed: number) {
  const a = t.getAdapter();
  const rng = new SplitMix32(seed);
  for (const m of a.modules.values()) for (let i = 0; i < m.b.length; i++) m.b[i] = (rng.uniform() - 0.5) * 0.5;
  t.setAdapter(a, { resetMoments: true });
}

test('gradSums are the gradient of the summed token loss (central finite differences, float64 sums)', () => {
  const t = AdapterTrainer.create({
    model,
    task: task({ coto: null, training: { batchSize: 4 } }),
    examples,
  });
  randomizeB(t, 5);
  const before = t.state();
  const g = t.computeGradients(0);
  t.restore(before); // rewind the data cursor: the same batch again
  // The batch computeGradients used: first 4 examples of epoch 0's permutation → recompute via
  // evaluate() after perturbing single parameters.
  const stream = (t as any).data;
  const theBatch = stream.next();
  stream.seek(before.cursor);
  const lossSumAt = (flat: Float32Array) => {
    const a = t.getAdapter();
    t.layout.unflattenInto(flat, a);
    t.setAdapter(a);
    return evaluate(model, theBatch, { lora: t.runtime }).lossSum;
  };
  const rng = new SplitMix32(9);
  const h = 1e-2;
  let checked = 0;
  for (let k = 0; k < 12; k++) {
    const i = rng.next() % t.layout.size;
    const plus = before.params.slice();
    plus[i] += h;
    const minus = before.params.slice();
    minus[i] -= h;
    const fd = (lossSumAt(plus) - lossSumAt(minus)) / (2 * h);
    assert.ok(
      Math.abs(fd - g.gradSums[i]) <= 2e-2 * Math.max(1, Math.abs(fd)),
      `param ${i}: fd ${fd} vs grad ${g.gradSums[i]}`,
    );
    checked++;
  }
  assert.equal(checked, 12);
  assert.equal(g.tokens, 4 * 7);
  t.dispose();
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

test('two replicas combined (Σ gradSums / Σ tokens) apply the same update in both processes', () => {
  const spec = task({ training: { steps: 10 } });
  const reps = [0, 1].map((replica) => AdapterTrainer.create({ model, task: spec, examples, replica, replicas: 2 }));
  for (let step = 0; step < 3; step++) {
    const gs = reps.map((r) => r.computeGradients(step));
    assert.deepEqual(gs[0].activeLayers, gs[1].activeLayers);
    const sum = new Float32Array(gs[0].gradSums.length);
    for (const g of gs) for (let i = 0; i < sum.length; i++) sum[i] += g.gradSums[i];
    const tokens = gs[0].tokens + gs[1].tokens;
    reps.forEach((r) => r.applyGradients(sum, tokens, step));
  }
  const [a, b] = reps.map((r) => r.state().params);
  assert.ok(
    a.every((v, i) => v === b[i]),
    'replicas diverged',
  );
  reps.forEach((r) => r.dispose());
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
