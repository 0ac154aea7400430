// The LM head and next-token cross-entropy in chunks of tokens, never holding batch × seq × vocab
// logits (or their gradient) at once. Public API:
//   interface HeadRows { rows, targets, weights }      the loss-bearing positions of a batch
//   headRowsOf(inputIds, targetMask, B, T) → HeadRows
//   headLossSum(weights, x [N,H] final-normed, rows, chunk) → scalar Σ w·nll, differentiable w.r.t. x
//   headEval(weights, x, rows, chunk) → { lossSum, correct, tokens }
//   defaultHeadChunk(vocab) → tokens per chunk when the options leave it open (≈ 64 MiB of logits)
// Per chunk of loss-bearing rows: logits = x·Wᵀ (vocabulary slab by slab when the head is streamed),
// nll = logsumexp(logits) − logits[target] (a gather, not a one-hot product). The backward recomputes a
// chunk's logits and forms dlogits = (softmax − onehot)·w·dy and dx = dlogits·W chunk by chunk.
// Only loss-bearing rows reach the head: the last position of each sequence and masked prompt tokens
// never cost a vocabulary-wide product.
import { tf } from '../tensor/engine.ts';
import type { BaseWeights } from './weights.ts';
import { rowsProduct } from '../tensor/ops.ts';

type CustomGradFn = Parameters<typeof tf.customGrad>[0];

export interface HeadRows {
  /** Flat row (b·T + t) of each loss-bearing position t < T−1 … */
  rows: Int32Array;
  /** … the token it must predict (ids[b, t+1]) … */
  targets: Int32Array;
  /** … and its weight (targetMask[b, t+1], non-zero). */
  weights: Float32Array;
}

/** targetMask[b,t] marks token t as loss-bearing, predicted from position t−1 (see model/loss.ts). */
export function headRowsOf(inputIds: Int32Array, targetMask: Float32Array, B: number, T: number): HeadRows {
  const rows: number[] = [];
  const targets: number[] = [];
  const weights: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      const w = targetMask[b * T + t];
      if (w === 0) continue;
      rows.push(b * T + t - 1);
      targets.push(inputIds[b * T + t]);
      weights.push(w);
    }
  }
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets), weights: Float32Array.from(weights) };
}

export function defaultHeadChunk(vocab: number): number {
  return Math.max(16, Math.floor((1 << 24) / vocab));
}

interface Chunk {
  start: number;
  end: number;
}

function chunksOf(n: number, size: number): Chunk[] {
  if (!(Number.isInteger(size) && size >= 1))
    throw new Error(`head: chunk size must be a positive integer, got ${size}`);
  const out: Chunk[] = [];
  for (let s = 0; s < n; s += size) out.push({ start: s, end: Math.min(n, s + size) });
  return out;
}

/** Logits [n, V] of rows x [n, H], slab by slab of the vocabulary. Not differentiable. */
export function logitsOf(w: BaseWeights, x: tf.Tensor2D): tf.Tensor2D {
  const parts = w.headSlabs().map((slab) => {
    const lease = w.headRows(slab);
    const y = rowsProduct(x, lease.value);
    lease.release();
    return y;
  });
  if (parts.length === 1) return parts[0];
  const out = tf.concat(parts, 1) as tf.Tensor2D;
  tf.dispose(parts);
  return out;
}

/** The flat index of each row's target logit in a [n, V] block. */
function targetIndex(rows: HeadRows, c: Chunk, V: number): tf.Tensor1D {
  const idx = new Int32Array(c.end - c.start);
  for (let i = 0; i < idx.length; i++) idx[i] = i * V + rows.targets[c.start + i];
  return tf.tensor1d(idx, 'int32');
}

/** Per-row logsumexp − target logit, [n], and the chunk's logits. */
function chunkNll(w: BaseWeights, xc: tf.Tensor2D, rows: HeadRows, c: Chunk, V: number) {
  const logits = logitsOf(w, xc);
  const lse = tf.logSumExp(logits, 1);
  const picked = tf.gather(tf.reshape(logits, [-1]), targetIndex(rows, c, V));
  return { logits, lse, nll: tf.sub(lse, picked) };
}

function chunkWeights(rows: HeadRows, c: Chunk): tf.Tensor1D {
  return tf.tensor1d(rows.weights.subarray(c.start, c.end));
}

export function headLossSum(w: BaseWeights, x: tf.Tensor2D, rows: HeadRows, chunk: number): tf.Scalar {
  const V = w.headSlabs().at(-1)!.end;
  const [N, H] = x.shape;
  const chunks = chunksOf(rows.rows.length, chunk);
  const f = tf.customGrad(((xx: tf.Tensor, save: tf.GradSaveFunc) => {
    const sel = tf.tidy(() => tf.gather(xx, tf.tensor1d(rows.rows, 'int32')) as tf.Tensor2D);
    let total: tf.Tensor = tf.scalar(0);
    // One chunk (the usual case at small batch): its logits and logsumexp are kept for the backward, which
    // then need not recompute the vocabulary-wide product (they are within the chunk budget by construction).
    let kept: tf.Tensor[] = [];
    for (const c of chunks) {
      const next = tf.tidy(() => {
        const xc = tf.slice(sel, [c.start, 0], [c.end - c.start, H]);
        const r = chunkNll(w, xc, rows, c, V);
        if (chunks.length === 1) kept = [tf.keep(r.logits), tf.keep(r.lse)];
        return tf.add(total, tf.sum(tf.mul(r.nll, chunkWeights(rows, c))));
      });
      total.dispose();
      total = next;
    }
    sel.dispose();
    save([xx, ...kept]);
    tf.dispose(kept);
    return {
      value: total,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        headBackward(w, saved[0] as tf.Tensor2D, dy, rows, chunks, V, N, saved.slice(1)),
    };
  }) as unknown as CustomGradFn);
  return f(x) as tf.Scalar;
}

/** dx [N, H]: zero on rows that bear no loss, dlogits·W on the others, one chunk of rows at a time. */
function headBackward(
  w: BaseWeights,
  x: tf.Tensor2D,
  dy: tf.Tensor,
  rows: HeadRows,
  chunks: Chunk[],
  V: number,
  N: number,
  kept: tf.Tensor[],
): tf.Tensor2D {
  const H = x.shape[1];
  const sel = tf.gather(x, tf.tensor1d(rows.rows, 'int32')) as tf.Tensor2D;
  const parts = chunks.map((c) =>
    tf.tidy(() => {
      const xc = tf.slice(sel, [c.start, 0], [c.end - c.start, H]);
      const { logits, lse } = kept.length === 2 ? { logits: kept[0], lse: kept[1] } : chunkNll(w, xc, rows, c, V);
      const scale = tf.mul(chunkWeights(rows, c), dy).reshape([-1, 1]);
      const oneHot = tf.cast(tf.oneHot(tf.tensor1d(rows.targets.subarray(c.start, c.end), 'int32'), V), 'float32');
      const dl = tf.mul(tf.sub(tf.exp(tf.sub(logits, lse.reshape([-1, 1]))), oneHot), scale) as tf.Tensor2D;
      return logitsBackward(w, dl);
    }),
  );
  // Scatter the chunk rows back to their positions as a gather from [dSel; 0] (wasm has no scatter).
  const back = new Int32Array(N).fill(rows.rows.length);
  rows.rows.forEach((r, i) => (back[r] = i));
  const all = tf.concat([...parts, tf.zeros([1, H])], 0);
  const dx = tf.gather(all, tf.tensor1d(back, 'int32')) as tf.Tensor2D;
  tf.dispose([sel, all, ...parts]);
  return dx;
}

/** dx [n, H] = dlogits [n, V] · W, slab by slab of the vocabulary (the head's backward for its input). */
export function logitsBackward(w: BaseWeights, dl: tf.Tensor2D): tf.Tensor2D {
  const slabs = w.headSlabs();
  let dx: tf.Tensor2D | null = null;
  for (const slab of slabs) {
    const dls: tf.Tensor2D = slabs.length === 1 ? dl : tf.slice(dl, [0, slab.start], [-1, slab.end - slab.start]);
    const lease = w.headRows(slab);
    const part: tf.Tensor2D = tf.matMul(dls, lease.value);
    lease.release();
    dx = dx ? (tf.add(dx, part) as tf.Tensor2D) : part;
  }
  return dx!;
}

export function headEval(
  w: BaseWeights,
  x: tf.Tensor2D,
  rows: HeadRows,
  chunk: number,
): { lossSum: number; correct: number; tokens: number } {
  const V = w.headSlabs().at(-1)!.end;
  const H = x.shape[1];
  let lossSum = 0;
  let correct = 0;
  for (const c of chunksOf(rows.rows.length, chunk)) {
    const [l, hits] = tf.tidy(() => {
      const xc = tf.gather(x, tf.tensor1d(rows.rows.subarray(c.start, c.end), 'int32')) as tf.Tensor2D;
      const { logits, nll } = chunkNll(w, xc.reshape([-1, H]), rows, c, V);
      const hit = tf.equal(tf.argMax(logits, 1), tf.tensor1d(rows.targets.subarray(c.start, c.end), 'int32'));
      return [tf.sum(tf.mul(nll, chunkWeights(rows, c))), tf.sum(tf.cast(hit, 'float32'))];
    });
    lossSum += l.dataSync()[0];
    correct += hits.dataSync()[0];
    tf.dispose([l, hits]);
  }
  return { lossSum, correct, tokens: rows.rows.length };
}
