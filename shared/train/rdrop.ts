// R-Drop (Liang et al., 2021) on the LoRA input dropout: the same batch through the model twice with
// independent dropout masks; per loss-bearing token
//   ℓ = ½ (CE₁ + CE₂) + α · ½ (KL(P₁‖P₂) + KL(P₂‖P₁)),   ½(KL₁₂ + KL₂₁) = ½ Σ_v (p₁ − p₂)(log p₁ − log p₂)
// (the paper's symmetric KL, both directions with gradients). Like the plain head (model/head.ts) it
// runs over chunks of loss-bearing rows and never holds batch × vocabulary logits: the backward
// recomputes a chunk's two logit blocks and forms their gradients in closed form,
//   ∂ℓ/∂z₁ = ½ (p₁ − onehot) + α · ½ (p₁ ⊙ (d − KL₁₂) + p₁ − p₂),   d = log p₁ − log p₂,
// and the same for z₂ with the roles swapped.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { LossOptions, TokenBatch } from '../model/loss.ts';
import { defaultHeadChunk, headRowsOf, logitsBackward, logitsOf, type HeadRows } from '../model/head.ts';
import type { BaseWeights } from '../model/weights.ts';

type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/**
 * Σ over loss-bearing tokens of the R-Drop loss (a scalar tensor; call inside variableGrads / tidy).
 * `seeds` are the two passes' dropout seeds.
 */
export function rdropLossSum(
  model: LlamaModel,
  batch: TokenBatch,
  fwd: Omit<LossOptions, 'dropoutSeed' | 'training'>,
  seeds: readonly [number, number],
  alpha: number,
): tf.Scalar {
  if (model.trainable) throw new ChorusError('R-Drop trains adapters on a frozen model, not a trainable one');
  const { batchSize: B, seqLen: T } = batch;
  const rows = headRowsOf(batch.inputIds, batch.targetMask, B, T);
  const pass = (seed: number) =>
    model.finalNorm(model.hidden(batch.inputIds, B, T, { ...fwd, training: true, dropoutSeed: seed }));
  const chunk = fwd.headChunkTokens ?? defaultHeadChunk(model.config.vocabSize);
  return rdropHeadSum(model.weights, pass(seeds[0]), pass(seeds[1]), rows, chunk, alpha);
}

/** Per-row pieces of one chunk: log-probabilities of both passes and the target one-hot. */
function chunkParts(w: BaseWeights, x1: tf.Tensor2D, x2: tf.Tensor2D, targets: Int32Array, V: number) {
  const lp1 = tf.logSoftmax(logitsOf(w, x1), 1);
  const lp2 = tf.logSoftmax(logitsOf(w, x2), 1);
  const hot = tf.oneHot(tf.tensor1d(targets, 'int32'), V).asType('float32');
  return { lp1, lp2, hot };
}

/**
 * Σ_rows weight · ℓ for final-normed hidden states x1, x2 [N, H] of the two passes (same rows), a
 * scalar differentiable w.r.t. both.
 */
export function rdropHeadSum(
  w: BaseWeights,
  x1: tf.Tensor2D,
  x2: tf.Tensor2D,
  rows: HeadRows,
  chunk: number,
  alpha: number,
): tf.Scalar {
  const V = w.headSlabs().at(-1)!.end;
  const [N, H] = x1.shape;
  const n = rows.rows.length;
  const chunks: Array<[number, number]> = [];
  for (let s = 0; s < n; s += chunk) chunks.push([s, Math.min(n, s + chunk)]);
  const select = (x: tf.Tensor) => tf.gather(x, tf.tensor1d(rows.rows, 'int32')) as tf.Tensor2D;
  const slice = (x: tf.Tensor2D, [s, e]: [number, number]) => tf.slice(x, [s, 0], [e - s, H]);
  const weightsOf = ([s, e]: [number, number]) => tf.tensor1d(rows.weights.subarray(s, e));
  const f = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a, b]);
    const value = tf.tidy(() => {
      const s1 = select(a);
      const s2 = select(b);
      let total: tf.Tensor = tf.scalar(0);
      for (const c of chunks) {
        const { lp1, lp2, hot } = chunkParts(w, slice(s1, c), slice(s2, c), rows.targets.subarray(...c), V);
        const ce = tf.mul(tf.sum(tf.mul(tf.add(lp1, lp2), hot), 1), -0.5);
        const kl = tf.mul(tf.sum(tf.mul(tf.sub(tf.exp(lp1), tf.exp(lp2)), tf.sub(lp1, lp2)), 1), 0.5);
        total = tf.add(total, tf.sum(tf.mul(tf.add(ce, tf.mul(kl, alpha)), weightsOf(c))));
      }
      return total;
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [d1, d2] = rdropBackward(w, saved[0] as tf.Tensor2D, saved[1] as tf.Tensor2D, dy, rows, chunks, alpha);
        // Scatter the selected rows back to [N, H] as a gather from [d; 0] (wasm has no scatter).
        const back = new Int32Array(N).fill(n);
        rows.rows.forEach((r, i) => (back[r] = i));
        return [d1, d2].map((d) =>
          tf.tidy(() => tf.gather(tf.concat([d, tf.zeros([1, H])], 0), tf.tensor1d(back, 'int32'))),
        );
      },
    };
  }) as unknown as CustomGradFn);
  return f(x1, x2) as tf.Scalar;

  function rdropBackward(
    wt: BaseWeights,
    a: tf.Tensor2D,
    b: tf.Tensor2D,
    dy: tf.Tensor,
    r: HeadRows,
    cs: Array<[number, number]>,
    al: number,
  ): [tf.Tensor2D, tf.Tensor2D] {
    const s1 = select(a);
    const s2 = select(b);
    const parts1: tf.Tensor2D[] = [];
    const parts2: tf.Tensor2D[] = [];
    for (const c of cs) {
      const [g1, g2] = tf.tidy(() => {
        const { lp1, lp2, hot } = chunkParts(wt, slice(s1, c), slice(s2, c), r.targets.subarray(...c), V);
        const p1 = tf.exp(lp1);
        const p2 = tf.exp(lp2);
        const d = tf.sub(lp1, lp2);
        const kl12 = tf.sum(tf.mul(p1, d), 1, true);
        const kl21 = tf.neg(tf.sum(tf.mul(p2, d), 1, true));
        const scale = tf.reshape(tf.mul(weightsOf(c), dy), [-1, 1]);
        const grad = (p: tf.Tensor, q: tf.Tensor, dd: tf.Tensor, kl: tf.Tensor) =>
          tf.mul(
            tf.mul(tf.add(tf.sub(p, hot), tf.mul(tf.add(tf.mul(p, tf.sub(dd, kl)), tf.sub(p, q)), al)), 0.5),
            scale,
          ) as tf.Tensor2D;
        return [logitsBackward(wt, grad(p1, p2, d, kl12)), logitsBackward(wt, grad(p2, p1, tf.neg(d), kl21))];
      });
      parts1.push(g1);
      parts2.push(g2);
    }
    tf.dispose([s1, s2]);
    const cat = (ps: tf.Tensor2D[]) => {
      const out = ps.length === 0 ? tf.zeros([0, H]) : ps.length === 1 ? ps[0] : tf.concat(ps, 0);
      if (ps.length > 1) tf.dispose(ps);
      return out as tf.Tensor2D;
    };
    return [cat(parts1), cat(parts2)];
  }
}
