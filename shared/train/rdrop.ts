// R-Drop (Liang et al., 2021) on the LoRA input dropout: the same batch through the model twice with
// independent dropout masks; per loss-bearing token
//   ℓ = ½ (CE₁ + CE₂) + α · ½ (KL(P₁‖P₂) + KL(P₂‖P₁)),   ½(KL₁₂ + KL₂₁) = ½ Σ_v (p₁ − p₂)(log p₁ − log p₂)
// (the paper's symmetric KL, both directions with gradients). The vocabulary-sized work runs over
// row chunks of the two logit tensors, so the [rows, V] temporaries (log-probabilities, their
// exponentials, one-hot targets) never exist for the whole batch at once.
import { tf } from '../tensor/engine.ts';
import type { ForwardOptions, LlamaModel } from '../model/llama.ts';
import type { TokenBatch } from '../model/loss.ts';

/** Rows of logits handled together in the loss (bounds the [rows, V] temporaries). */
const ROWS_PER_CHUNK = 512;

/**
 * Σ over loss-bearing tokens of the R-Drop loss (a scalar tensor; call inside variableGrads / tidy).
 * `seeds` are the two passes' dropout seeds.
 */
export function rdropLossSum(
  model: LlamaModel,
  batch: TokenBatch,
  fwd: Omit<ForwardOptions, 'dropoutSeed' | 'training'>,
  seeds: readonly [number, number],
  alpha: number,
  rowsPerChunk = ROWS_PER_CHUNK,
): tf.Scalar {
  const { batchSize: B, seqLen: T } = batch;
  const V = model.config.vocabSize;
  const ids = tf.tensor2d(batch.inputIds, [B, T], 'int32');
  const rows = B * (T - 1);
  const flat = (seed: number) =>
    tf.reshape(tf.slice(model.forward(ids, { ...fwd, training: true, dropoutSeed: seed }), [0, 0, 0], [B, T - 1, V]), [
      rows,
      V,
    ]) as tf.Tensor2D;
  const l1 = flat(seeds[0]);
  const l2 = flat(seeds[1]);
  const targets = tf.reshape(tf.slice(ids, [0, 1], [B, T - 1]), [rows]) as tf.Tensor1D;
  const weights = tf.reshape(tf.slice(tf.tensor2d(batch.targetMask, [B, T]), [0, 1], [B, T - 1]), [rows]);
  let total: tf.Scalar = tf.scalar(0);
  for (let start = 0; start < rows; start += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - start);
    const part = tokenLosses(
      tf.slice(l1, [start, 0], [n, V]),
      tf.slice(l2, [start, 0], [n, V]),
      tf.slice(targets, [start], [n]) as tf.Tensor1D,
      alpha,
    );
    total = tf.add(total, tf.sum(tf.mul(part, tf.slice(weights, [start], [n])))) as tf.Scalar;
  }
  return total;
}

/** Per-row R-Drop loss [n] of two logit blocks [n, V] for the same targets [n]. */
export function tokenLosses(l1: tf.Tensor2D, l2: tf.Tensor2D, targets: tf.Tensor1D, alpha: number): tf.Tensor1D {
  const V = l1.shape[1];
  const lp1 = tf.logSoftmax(l1, -1);
  const lp2 = tf.logSoftmax(l2, -1);
  // One-hot selection instead of gather: its gradient needs no scatter kernel (absent on wasm).
  const hot = tf.oneHot(targets, V);
  const ce = tf.neg(tf.sum(tf.mul(tf.add(lp1, lp2), hot), -1));
  const ceMean = tf.mul(ce, 0.5);
  if (alpha === 0) return ceMean as tf.Tensor1D;
  const symKl = tf.mul(tf.sum(tf.mul(tf.sub(tf.exp(lp1), tf.exp(lp2)), tf.sub(lp1, lp2)), -1), 0.5);
  return tf.add(ceMean, tf.mul(symKl, alpha)) as tf.Tensor1D;
}
