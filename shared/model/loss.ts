// Next-token loss and evaluation over token batches. Public API:
//   interface TokenBatch { inputIds: Int32Array; targetMask: Float32Array; batchSize; seqLen }
//     row-major [batchSize, seqLen]; targetMask[b,t] = 1 when token t is loss-bearing, i.e. it is
//     predicted from tokens < t (so targetMask[b,0] is ignored: nothing predicts the first token).
//   nextTokenLoss(model, batch, { lora?, activeLayers?, training?, dropoutSeed?, attentionBlock?, headChunkTokens? })
//     → scalar tensor: mean cross-entropy over loss-bearing targets (0 when there are none); use inside variableGrads.
//   nextTokenLossSum(model, batch, opts) → the same summed (weights · nll), what the trainer differentiates
//   evaluate(model, batch, { lora?, activeLayers?, rowsPerChunk?, headChunkTokens? }) → { lossSum, tokens, correct }
//     summed (not averaged) so callers can add batches up; correct = argmax(logits) == target.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import type { ForwardOptions, LlamaModel } from './llama.ts';
import { defaultHeadChunk, headEval, headLossSum, headRowsOf } from './head.ts';

export interface TokenBatch {
  inputIds: Int32Array;
  targetMask: Float32Array;
  batchSize: number;
  seqLen: number;
}

export interface EvalResult {
  lossSum: number;
  tokens: number;
  correct: number;
}

function checkBatch(model: LlamaModel, b: TokenBatch): void {
  const n = b.batchSize * b.seqLen;
  if (!Number.isInteger(b.batchSize) || b.batchSize <= 0 || !Number.isInteger(b.seqLen) || b.seqLen < 2) {
    throw new ChorusError(`batch: batchSize must be ≥ 1 and seqLen ≥ 2, got ${b.batchSize}×${b.seqLen}`);
  }
  if (b.inputIds.length !== n || b.targetMask.length !== n) {
    throw new ChorusError(
      `batch: inputIds (${b.inputIds.length}) and targetMask (${b.targetMask.length}) must both hold ${b.batchSize}×${b.seqLen} values`,
    );
  }
  const V = model.config.vocabSize;
  for (let i = 0; i < n; i++) {
    const id = b.inputIds[i];
    if (id < 0 || id >= V) {
      throw new ChorusError(
        `batch: token id ${id} at row ${Math.floor(i / b.seqLen)}, position ${i % b.seqLen} is outside the vocabulary (size ${V})`,
      );
    }
  }
}

/** Per-position negative log-likelihood [B, T-1] from full logits: the trainable (full-parameter) model's
 * path, whose head weights take gradients; frozen heads go through head.ts in chunks instead. */
function fullLogitsNll(
  model: LlamaModel,
  batch: TokenBatch,
  opts: ForwardOptions,
): { nll: tf.Tensor2D; weights: tf.Tensor2D } {
  const { batchSize: B, seqLen: T } = batch;
  const ids = tf.tensor2d(batch.inputIds, [B, T], 'int32');
  const logits = tf.slice(model.forward(ids, opts), [0, 0, 0], [B, T - 1, -1]) as tf.Tensor3D;
  const targets = tf.slice(ids, [0, 1], [B, T - 1]) as tf.Tensor2D;
  const weights = tf.slice(tf.tensor2d(batch.targetMask, [B, T]), [0, 1], [B, T - 1]) as tf.Tensor2D;
  const logp = tf.logSoftmax(logits, -1);
  // One-hot selection: the table's gradient through gather needs a scatter kernel (absent on wasm).
  const picked = tf.sum(tf.mul(logp, tf.oneHot(targets, model.config.vocabSize)), -1) as tf.Tensor2D;
  return { nll: tf.neg(picked) as tf.Tensor2D, weights };
}

export interface LossOptions extends ForwardOptions {
  /** Tokens of the LM head + cross-entropy at a time (default: about 64 MiB of logits). */
  headChunkTokens?: number;
}

/** Σ over loss-bearing targets of weight · cross-entropy; use inside variableGrads. */
export function nextTokenLossSum(model: LlamaModel, batch: TokenBatch, opts: LossOptions = {}): tf.Scalar {
  checkBatch(model, batch);
  const { batchSize: B, seqLen: T } = batch;
  return tf.tidy(() => {
    if (model.trainable) {
      const { nll: l, weights } = fullLogitsNll(model, batch, opts);
      return tf.sum(tf.mul(l, weights)) as tf.Scalar;
    }
    const rows = headRowsOf(batch.inputIds, batch.targetMask, B, T);
    const x = model.finalNorm(model.hidden(batch.inputIds, B, T, opts));
    return headLossSum(model.weights, x, rows, opts.headChunkTokens ?? defaultHeadChunk(model.config.vocabSize));
  });
}

/** Mean cross-entropy over loss-bearing targets (0 when there are none); use inside variableGrads. */
export function nextTokenLoss(model: LlamaModel, batch: TokenBatch, opts: LossOptions = {}): tf.Scalar {
  checkBatch(model, batch);
  let count = 0;
  for (let b = 0; b < batch.batchSize; b++) {
    for (let t = 1; t < batch.seqLen; t++) count += batch.targetMask[b * batch.seqLen + t] !== 0 ? 1 : 0;
  }
  return tf.tidy(() => tf.div(nextTokenLossSum(model, batch, opts), Math.max(count, 1)) as tf.Scalar);
}

export function evaluate(
  model: LlamaModel,
  batch: TokenBatch,
  opts: Omit<LossOptions, 'training'> & { rowsPerChunk?: number } = {},
): EvalResult {
  checkBatch(model, batch);
  const rows = Math.max(1, opts.rowsPerChunk ?? batch.batchSize);
  const T = batch.seqLen;
  const chunk = opts.headChunkTokens ?? defaultHeadChunk(model.config.vocabSize);
  const out: EvalResult = { lossSum: 0, tokens: 0, correct: 0 };
  for (let start = 0; start < batch.batchSize; start += rows) {
    const n = Math.min(rows, batch.batchSize - start);
    const ids = batch.inputIds.subarray(start * T, (start + n) * T);
    const head = headRowsOf(ids, batch.targetMask.subarray(start * T, (start + n) * T), n, T);
    const x = tf.tidy(() => model.finalNorm(model.hidden(ids, n, T, { ...opts, training: false })));
    const r = headEval(model.weights, x, head, chunk);
    x.dispose();
    out.lossSum += r.lossSum;
    out.correct += r.correct;
    out.tokens += r.tokens;
  }
  return out;
}
