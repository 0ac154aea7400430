// The memory-lean pieces against independent computations: blocked attention (running softmax and
// its hand-written backward) against float64 loops and against the dense path's autodiff; the chunked
// LM head + cross-entropy (and its backward) against float64 loops, resident and streamed in slabs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { attention, attentionBlockFor, causalMask } from '../../shared/model/attention.ts';
import { headEval, headLossSum, headRowsOf } from '../../shared/model/head.ts';
import { makeLlamaConfig } from '../../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { gaussian, lcg } from './reference.ts';

await initEngine(process.env.CHORUS_TEST_BACKEND ?? 'wasm', { quiet: true });

const random = (n: number, seed: number) => {
  const g = gaussian(lcg(seed));
  return Float32Array.from({ length: n }, () => g());
};

function maxRelative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  assert.ok(scale > 0.1, `values too small to compare (${scale})`);
  return diff / scale;
}

/** Float64 causal GQA attention and the gradients of Σ out ∘ R w.r.t. q, k, v (by hand). */
function refAttention(q: Float32Array, k: Float32Array, v: Float32Array, R: Float32Array, dims: number[]) {
  const [B, nh, nkv, T, d] = dims;
  const group = nh / nkv;
  const out = new Float64Array(B * nh * T * d);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const qi = (b: number, h: number, t: number) => ((b * nh + h) * T + t) * d;
  const ki = (b: number, h: number, t: number) => ((b * nkv + h) * T + t) * d;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nh; h++) {
      const kv = Math.floor(h / group);
      for (let i = 0; i < T; i++) {
        const s: number[] = [];
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let x = 0; x < d; x++) dot += q[qi(b, h, i) + x] * k[ki(b, kv, j) + x];
          s.push(dot / Math.sqrt(d));
        }
        const m = Math.max(...s);
        const e = s.map((z) => Math.exp(z - m));
        const sum = e.reduce((a, c) => a + c, 0);
        const p = e.map((z) => z / sum);
        for (let x = 0; x < d; x++) {
          let o = 0;
          for (let j = 0; j <= i; j++) o += p[j] * v[ki(b, kv, j) + x];
          out[qi(b, h, i) + x] = o;
        }
        // dP_j = R_i · v_j; dS_j = P_j (dP_j − Σ P dP); dq += dS_j k_j / √d; dk_j += dS_j q / √d; dv_j += P_j R_i
        const dP = p.map((_, j) => {
          let z = 0;
          for (let x = 0; x < d; x++) z += R[qi(b, h, i) + x] * v[ki(b, kv, j) + x];
          return z;
        });
        const mean = p.reduce((a, pj, j) => a + pj * dP[j], 0);
        for (let j = 0; j <= i; j++) {
          const dS = (p[j] * (dP[j] - mean)) / Math.sqrt(d);
          for (let x = 0; x < d; x++) {
            dq[qi(b, h, i) + x] += dS * k[ki(b, kv, j) + x];
            dk[ki(b, kv, j) + x] += dS * q[qi(b, h, i) + x];
            dv[ki(b, kv, j) + x] += p[j] * R[qi(b, h, i) + x];
          }
        }
      }
    }
  }
  return { out, dq, dk, dv };
}

test('blocked attention (running softmax) equals float64 and the dense path, values and q/k/v gradients', () => {
  const [B, nh, nkv, T, d] = [2, 4, 2, 11, 6];
  const q = random(B * nh * T * d, 1);
  const k = random(B * nkv * T * d, 2);
  const v = random(B * nkv * T * d, 3);
  const R = random(B * nh * T * d, 4);
  const ref = refAttention(q, k, v, R, [B, nh, nkv, T, d]);
  const run = (block: number | undefined) =>
    tf.tidy(() => {
      const mask = causalMask(T);
      const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
        tf.sum(
          tf.mul(
            attention(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, { mask, block }),
            tf.tensor4d(R, [B, nh, T, d]),
          ),
        );
      const args = [tf.tensor4d(q, [B, nh, T, d]), tf.tensor4d(k, [B, nkv, T, d]), tf.tensor4d(v, [B, nkv, T, d])];
      const out = attention(args[0] as tf.Tensor4D, args[1] as tf.Tensor4D, args[2] as tf.Tensor4D, { mask, block });
      const grads = tf.grads(f)(args);
      return [out, ...grads].map((t) => t.dataSync() as Float32Array);
    });
  const dense = run(undefined);
  for (const block of [1, 3, 4, 10]) {
    const got = run(block);
    const names = ['value', 'dq', 'dk', 'dv'];
    [ref.out, ref.dq, ref.dk, ref.dv].forEach((want, i) => {
      const e = maxRelative(got[i], want);
      assert.ok(e < 2e-6, `block ${block} ${names[i]}: relative error ${e.toExponential(2)} vs float64`);
      const e2 = maxRelative(got[i], dense[i]);
      assert.ok(e2 < 2e-6, `block ${block} ${names[i]}: relative error ${e2.toExponential(2)} vs the dense path`);
    });
  }
});

/** Float64 Σ w·(lse − logit[target]) over the given rows and its gradient w.r.t. x [N, H], W [V, H]. */
function refHead(
  x: Float32Array,
  W: Float32Array,
  N: number,
  H: number,
  V: number,
  rows: ReturnType<typeof headRowsOf>,
) {
  const dx = new Float64Array(N * H);
  let loss = 0;
  let correct = 0;
  rows.rows.forEach((r, i) => {
    const logits = Array.from({ length: V }, (_, v) => {
      let z = 0;
      for (let h = 0; h < H; h++) z += x[r * H + h] * W[v * H + h];
      return z;
    });
    const m = Math.max(...logits);
    const lse = m + Math.log(logits.reduce((a, z) => a + Math.exp(z - m), 0));
    loss += rows.weights[i] * (lse - logits[rows.targets[i]]);
    if (logits.indexOf(m) === rows.targets[i]) correct++;
    for (let v = 0; v < V; v++) {
      const g = rows.weights[i] * (Math.exp(logits[v] - lse) - (v === rows.targets[i] ? 1 : 0));
      for (let h = 0; h < H; h++) dx[r * H + h] += g * W[v * H + h];
    }
  });
  return { loss, dx, correct };
}

for (const [label, tied, streamed] of [
  ['untied, resident', false, false],
  ['tied, resident', true, false],
  ['untied, streamed in slabs of 7 rows', false, true],
  ['tied, streamed in slabs of 7 rows', true, true],
] as const) {
  test(`chunked LM head + cross-entropy equals float64: loss, dx, accuracy (${label})`, () => {
    const [B, T, H, V] = [3, 6, 8, 23];
    const config = makeLlamaConfig({
      hiddenSize: H,
      numHiddenLayers: 1,
      numAttentionHeads: 2,
      vocabSize: V,
      intermediateSize: 16,
      tieWordEmbeddings: tied,
    });
    const weights = initRandomWeights(config, 9);
    for (const t of weights.values()) t.data.set(random(t.data.length, t.data.length)); // scale ~1: far from uniform
    const model = LlamaModel.fromTensors(config, weights, 'fixture', {
      baseWeights: streamed ? 'streamed' : 'resident',
      headSlabRows: 7,
    });
    const W = weights.get(tied ? 'model.embed_tokens.weight' : 'lm_head.weight')!.data;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V);
    const mask = Float32Array.from({ length: B * T }, (_, i) =>
      i % T === 0 || i % 5 === 2 ? 0 : i % 4 === 1 ? 0.5 : 1,
    );
    const rows = headRowsOf(ids, mask, B, T);
    const x = random(B * T * H, 5);
    const ref = refHead(x, W, B * T, H, V, rows);
    for (const chunk of [1, 4, 100]) {
      const [loss, dx] = tf.tidy(() => {
        const xt = tf.tensor2d(x, [B * T, H]);
        const { value, grad } = tf.valueAndGrad((xx: tf.Tensor) =>
          headLossSum(model.weights, xx as tf.Tensor2D, rows, chunk),
        )(xt, tf.scalar(2));
        return [value.dataSync()[0], grad.dataSync() as Float32Array];
      });
      assert.ok(Math.abs(loss - ref.loss) < 1e-5 * Math.abs(ref.loss), `chunk ${chunk}: loss ${loss} vs ${ref.loss}`);
      const e = maxRelative(
        dx,
        ref.dx.map((g) => 2 * g),
      );
      assert.ok(e < 1e-5, `chunk ${chunk}: dx relative error ${e.toExponential(2)}`);
      const ev = tf.tidy(() => headEval(model.weights, tf.tensor2d(x, [B * T, H]), rows, chunk));
      assert.ok(Math.abs(ev.lossSum - ref.loss) < 1e-5 * Math.abs(ref.loss));
      assert.equal(ev.correct, ref.correct);
      assert.equal(ev.tokens, rows.rows.length);
    }
    model.dispose();
  });
}

test('attentionBlockFor: dense while 3 score copies fit the budget, else the largest power-of-two block that does', () => {
  const MiB = 2 ** 20;
  // 4 × 9 heads × 128² × 4 B × 3 = 6.75 MiB
  assert.equal(attentionBlockFor(4, 9, 128, 7 * MiB), undefined);
  assert.equal(attentionBlockFor(4, 9, 128, 6 * MiB), 64);
  // 1 × 9 × 4096² × 12 B = 1.7 GiB dense; a 64 MiB budget takes blocks of 512 (1 × 9 × 512² × 12 B = 27 MiB)
  assert.equal(attentionBlockFor(1, 9, 4096, 64 * MiB), 512);
  assert.equal(attentionBlockFor(8, 32, 8192, 1), 16);
});
