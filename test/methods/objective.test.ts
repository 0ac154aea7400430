// Multi-sample dropout and R-Drop against independent computations: the K-sample gradient against
// the mean of K single-sample gradients taken one at a time, and R-Drop's loss against float64
// cross-entropies and KL divergences computed on the host from the two passes' logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../shared/tensor/engine.ts';
import { deriveSeed, SplitMix32 } from '../../shared/tensor/random.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { nextTokenLoss, type TokenBatch } from '../../shared/model/loss.ts';
import { dropoutSampleSeed } from '../../shared/train/objective.ts';
import { rdropHeadSum, rdropLossSum } from '../../shared/train/rdrop.ts';
import { logitsOf } from '../../shared/model/head.ts';
import { randomExamples, task, tinyModel } from '../train/helpers.ts';

const model = await tinyModel({ layers: 2 });
const V = model.config.vocabSize;
const examples = randomExamples(32, 8, V, 11);

function randomizeB(t: AdapterTrainer, seed: number) {
  const a = t.getAdapter();
  const rng = new SplitMix32(seed);
  for (const m of a.modules.values()) for (let i = 0; i < m.b.length; i++) m.b[i] = (rng.uniform() - 0.5) * 0.5;
  t.setAdapter(a, { resetMoments: true });
}

/** The batch the trainer's next computeGradients will use (the cursor is put back). */
function peekBatch(t: AdapterTrainer): TokenBatch {
  const stream = (t as any).data;
  const cursor = stream.cursor;
  const batch = stream.next();
  stream.seek(cursor);
  return batch;
}

test('dropout_samples K: the gradient is the mean of K single-sample gradients computed one at a time', () => {
  const K = 3;
  const t = AdapterTrainer.create({
    model,
    task: task({ coto: null, lora: { loraDropout: 0.4, dropoutSamples: K } }),
    examples,
  });
  randomizeB(t, 5);
  const batch = peekBatch(t);
  let count = 0;
  for (let i = 0; i < batch.inputIds.length; i++) if (i % batch.seqLen !== 0 && batch.targetMask[i] !== 0) count++;
  const g = t.computeGradients(0);
  // Independent: each sample's gradient on its own (float64 sums on the host), then their mean.
  const microSeed = deriveSeed(t.seed, 0, 0, 0);
  const vars = t.runtime.variables();
  const mean = new Float64Array(t.layout.size);
  const singles: Float64Array[] = [];
  for (let k = 0; k < K; k++) {
    const { grads } = tf.variableGrads(
      () =>
        tf.mul(
          nextTokenLoss(model, batch, {
            lora: t.runtime,
            training: true,
            dropoutSeed: dropoutSampleSeed(microSeed, k),
          }),
          count,
        ) as tf.Scalar,
      vars,
    );
    const one = new Float64Array(t.layout.size);
    for (const s of t.layout.slots) {
      const named = t.runtime.namedVariables();
      const a = grads[named.get(`${s.path}.lora_A`)!.name].dataSync();
      const b = grads[named.get(`${s.path}.lora_B`)!.name].dataSync();
      a.forEach((v, i) => (one[s.offset + i] = v));
      b.forEach((v, i) => (one[s.offset + s.aLength + i] = v));
    }
    tf.dispose(grads);
    singles.push(one);
    one.forEach((v, i) => (mean[i] += v / K));
  }
  // The samples really differ (else the test could not tell K samples from one).
  for (let x = 0; x < K; x++) {
    for (let y = x + 1; y < K; y++) {
      let spread = 0;
      for (let i = 0; i < mean.length; i++) spread = Math.max(spread, Math.abs(singles[x][i] - singles[y][i]));
      assert.ok(spread > 1e-3, `samples ${x} and ${y} should differ, max gradient difference ${spread}`);
    }
  }
  let scale = 0;
  for (const v of mean) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < mean.length; i++) {
    assert.ok(Math.abs(g.gradSums[i] - mean[i]) <= 1e-5 * scale + 1e-6, `entry ${i}: ${g.gradSums[i]} vs ${mean[i]}`);
  }
  t.dispose();
});

test('dropout_samples 1 is the plain objective bit for bit', () => {
  const mk = (samples?: number) =>
    AdapterTrainer.create({
      model,
      task: task({ coto: null, lora: { loraDropout: 0.4, ...(samples ? { dropoutSamples: samples } : {}) } }),
      examples,
    });
  const a = mk();
  const b = mk(1);
  randomizeB(a, 2);
  randomizeB(b, 2);
  assert.deepEqual(a.computeGradients(0).gradSums, b.computeGradients(0).gradSums);
  a.dispose();
  b.dispose();
});

/** Float64 R-Drop loss sum from the two passes' logits [B, T, V]. */
function rdropReference(batch: TokenBatch, l1: Float32Array, l2: Float32Array, alpha: number) {
  const { batchSize: B, seqLen: T } = batch;
  const logSoftmax = (row: Float32Array) => {
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    const lz = max + Math.log(z);
    return Array.from(row, (v) => v - lz);
  };
  let ce = 0;
  let kl = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      const w = batch.targetMask[b * T + t];
      if (w === 0) continue;
      const at = (b * T + t - 1) * V;
      const p = logSoftmax(l1.subarray(at, at + V));
      const q = logSoftmax(l2.subarray(at, at + V));
      const target = batch.inputIds[b * T + t];
      ce += w * -0.5 * (p[target] + q[target]);
      let kpq = 0;
      let kqp = 0;
      for (let v = 0; v < V; v++) {
        kpq += Math.exp(p[v]) * (p[v] - q[v]);
        kqp += Math.exp(q[v]) * (q[v] - p[v]);
      }
      kl += w * 0.5 * (kpq + kqp);
    }
  }
  return { ce, kl, total: ce + alpha * kl };
}

test('R-Drop loss: mean of the two cross-entropies + α × symmetric KL, against float64 on the host', () => {
  const t = AdapterTrainer.create({ model, task: task({ coto: null, lora: { loraDropout: 0.3 } }), examples });
  randomizeB(t, 9);
  const batch = peekBatch(t);
  // Some targets masked out, to check the weights.
  batch.targetMask[3] = 0;
  batch.targetMask[batch.seqLen + 5] = 0;
  const seeds = [dropoutSampleSeed(77, 0), dropoutSampleSeed(77, 1)] as const;
  const logits = seeds.map((s) =>
    tf.tidy(() =>
      model.forward(tf.tensor2d(batch.inputIds, [batch.batchSize, batch.seqLen], 'int32'), {
        lora: t.runtime,
        training: true,
        dropoutSeed: s,
      }),
    ),
  );
  const [l1, l2] = logits.map((l) => l.dataSync() as Float32Array);
  tf.dispose(logits);
  const alpha = 4;
  const ref = rdropReference(batch, l1, l2, alpha);
  // The KL term is far above the tolerance, so a wrong or missing KL cannot pass.
  assert.ok(alpha * ref.kl > 50 * 1e-5 * ref.total, `the two passes should differ (KL ${ref.kl}, CE ${ref.ce})`);
  for (const headChunkTokens of [undefined, 5]) {
    const fwd = { lora: t.runtime, headChunkTokens };
    const got = tf.tidy(() => rdropLossSum(model, batch, fwd, seeds, alpha).dataSync()[0]);
    assert.ok(
      Math.abs(got - ref.total) <= 1e-5 * ref.total,
      `chunk ${headChunkTokens}: ${got} vs float64 ${ref.total}`,
    );
  }
  const ceOnly = tf.tidy(() => rdropLossSum(model, batch, { lora: t.runtime }, seeds, 0).dataSync()[0]);
  assert.ok(Math.abs(ceOnly - ref.ce) <= 1e-5 * ref.ce, `α = 0: ${ceOnly} vs ${ref.ce}`);
  t.dispose();
});

test('R-Drop head: the closed-form chunked gradient equals autodiff of the plain formula', () => {
  const N = 12;
  const H = model.config.hiddenSize;
  const rng = new SplitMix32(4);
  const rand = () =>
    tf.tensor2d(
      Float32Array.from({ length: N * H }, () => rng.normal()),
      [N, H],
    );
  const x1 = rand();
  const x2 = rand();
  // Rows 0, 3, 4, … bear loss with assorted weights; the others must get a zero gradient.
  const rowList = [0, 3, 4, 7, 8, 9, 11];
  const rows = {
    rows: Int32Array.from(rowList),
    targets: Int32Array.from(rowList, (r) => (r * 5) % V),
    weights: Float32Array.from(rowList, (_, i) => 1 + (i % 3) * 0.5),
  };
  const alpha = 1.5;
  const [g1, g2] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    rdropHeadSum(model.weights, a as tf.Tensor2D, b as tf.Tensor2D, rows, 3, alpha),
  )([x1, x2]);
  // The plain formula on full logits, differentiated by tfjs.
  const [r1, r2] = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
    // Row selection as a 0/1 product (gather's gradient needs a scatter kernel, absent on wasm).
    const sel = tf.oneHot(tf.tensor1d(rows.rows, 'int32'), N).asType('float32') as tf.Tensor2D;
    const pick = (x: tf.Tensor) => tf.matMul(sel, x as tf.Tensor2D) as tf.Tensor2D;
    const lp1 = tf.logSoftmax(logitsOf(model.weights, pick(a)), 1);
    const lp2 = tf.logSoftmax(logitsOf(model.weights, pick(b)), 1);
    const hot = tf.oneHot(tf.tensor1d(rows.targets, 'int32'), V).asType('float32');
    const kl12 = tf.sum(tf.mul(tf.exp(lp1), tf.sub(lp1, lp2)), 1);
    const kl21 = tf.sum(tf.mul(tf.exp(lp2), tf.sub(lp2, lp1)), 1);
    const ce = tf.neg(tf.sum(tf.mul(tf.add(lp1, lp2), hot), 1));
    const per = tf.add(tf.mul(ce, 0.5), tf.mul(tf.add(kl12, kl21), 0.5 * alpha));
    return tf.sum(tf.mul(per, tf.tensor1d(rows.weights)));
  })([x1, x2]);
  for (const [got, ref] of [
    [g1, r1],
    [g2, r2],
  ]) {
    const a = got.dataSync();
    const b = ref.dataSync();
    let scale = 0;
    for (const v of b) scale = Math.max(scale, Math.abs(v));
    assert.ok(scale > 1e-3);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-5 * scale, `${i}: ${a[i]} vs ${b[i]}`);
  }
  tf.dispose([x1, x2, g1, g2, r1, r2]);
});

/** Sequences that count up by one (mod V) from a random start: learnable by a small LoRA. */
function countingExamples(n: number, len: number, seed: number) {
  const rng = new SplitMix32(seed);
  return Array.from({ length: n }, () => {
    const start = rng.next() % V;
    return {
      inputIds: Int32Array.from({ length: len }, (_, i) => (start + i) % V),
      lossMask: Uint8Array.from({ length: len }, (_, i) => (i === 0 ? 0 : 1)),
    };
  });
}

test('R-Drop in the trainer: the step loss is the R-Drop objective and training lowers it', () => {
  const t = AdapterTrainer.create({
    model,
    task: task({
      coto: null,
      lora: { loraDropout: 0.2, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] },
      training: { rdrop: { alpha: 1 }, lr: 2e-2, steps: 30 },
    }),
    examples: countingExamples(32, 8, 4),
  });
  const batch = peekBatch(t);
  const microSeed = deriveSeed(t.seed, 0, 0, 0);
  const seeds = [dropoutSampleSeed(microSeed, 0), dropoutSampleSeed(microSeed, 1)] as const;
  const expected = tf.tidy(() => rdropLossSum(model, batch, { lora: t.runtime }, seeds, 1).dataSync()[0]);
  const first = t.trainStep();
  assert.ok(
    Math.abs(first.loss * first.tokens - expected) <= 1e-5 * expected,
    `${first.loss * first.tokens} vs ${expected}`,
  );
  let last = first.loss;
  for (let s = 1; s < 30; s++) last = t.trainStep().loss;
  assert.ok(last < first.loss - 0.05, `loss ${first.loss} → ${last}`);
  t.dispose();
});

test('the trainer refuses R-Drop without dropout and R-Drop with several dropout samples', () => {
  assert.throws(
    () => AdapterTrainer.create({ model, task: task({ training: { rdrop: { alpha: 1 } } }), examples }),
    /training\.rdrop: needs lora\.dropout > 0/,
  );
  assert.throws(
    () =>
      AdapterTrainer.create({
        model,
        task: task({ lora: { loraDropout: 0.1, dropoutSamples: 2 }, training: { rdrop: { alpha: 1 } } }),
        examples,
      }),
    /cannot be combined with lora\.dropout_samples/,
  );
});
