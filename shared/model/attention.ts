// Causal grouped-query attention, HF's eager path (softmax(q·kᵀ/√d + causal mask)·v with KV heads
// repeated), in two exact forms. Public API:
//   causalMask(T) → [T, T] additive mask (0 on and below the diagonal, −1e9 above)
//   attentionBlockFor(batch, heads, T, budgetBytes) → undefined (dense fits) or a block size that fits
//   attention(q [B,nh,T,d], k [B,nkv,S,d], v [B,nkv,S,d], { mask?, block? }) → [B, nh, T, d]
//     block undefined: dense scores [B, nh, T, S] (fastest while they fit; needs `mask` [T, S]);
//     S > T when a KV cache supplies earlier positions' keys (decoding), else S = T
//     block N: queries and keys in blocks of N with a running softmax (flash attention), with a
//     hand-written backward that recomputes each block's scores from the saved log-sum-exp, so
//     neither pass ever holds more than B × nh × N × N scores.
// GQA without copying K/V: the `group` query heads of one KV head are stacked along the sequence axis
// ([B, nkv, group·T, d]), which is HF's repeat_kv (query head h reads KV head floor(h / group)).
// 1/√d is applied to q ([T, d] per head) rather than to the scores ([T, T]): the same product.
import { tf } from '../tensor/engine.ts';
import { batchMatMul, bmm } from '../tensor/ops.ts';

type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/** The masked score: a large finite negative (not −Infinity) so 0·mask stays finite in gradients. */
const MASKED = -1e9;

export function causalMask(T: number): tf.Tensor2D {
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = MASKED;
  return tf.tensor2d(mask, [T, T]);
}

/**
 * The block size for a layer whose float32 scores (batch × heads × T × T, a few live copies in the backward)
 * must stay under `budgetBytes`: undefined when the dense scores fit, else the largest power of two ≥ 16
 * whose block scores do (16 at least: smaller blocks cost more in per-block overhead than they save).
 */
export function attentionBlockFor(batch: number, heads: number, T: number, budgetBytes: number): number | undefined {
  const bytes = (n: number) => 4 * SCORE_COPIES * batch * heads * n * n;
  if (bytes(T) <= budgetBytes) return undefined;
  let block = 16;
  while (block * 2 < T && bytes(block * 2) <= budgetBytes) block *= 2;
  return block;
}

/** Score-sized tensors alive at once in the dense backward (scores, probabilities, their gradient). */
const SCORE_COPIES = 3;

export interface AttentionOptions {
  /** The [T, T] causal mask (dense path; the blocked path builds its own per block). */
  mask?: tf.Tensor2D;
  /** Query/key block size; undefined (or ≥ T) = dense. */
  block?: number;
}

export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: AttentionOptions): tf.Tensor4D {
  const [B, nh, T, d] = q.shape;
  const nkv = k.shape[1];
  const group = nh / nkv;
  const scaled = tf.mul(q, 1 / Math.sqrt(d)) as tf.Tensor4D;
  if (opts.block !== undefined && !(Number.isInteger(opts.block) && opts.block >= 1)) {
    throw new Error(`attention: block must be a positive integer, got ${opts.block}`);
  }
  if (opts.block !== undefined && opts.block < T) return blockedAttention(scaled, k, v, opts.block);
  if (!opts.mask) throw new Error('attention: the dense path needs the causal mask');
  // S keys: T, or more when a KV cache holds earlier positions (then the mask is [T, S]).
  const S = k.shape[2];
  const qGrouped = tf.reshape(scaled, [B, nkv, group * T, d]);
  const scores = tf.reshape(bmm(qGrouped, k, true), [B, nh, T, S]);
  const probs = tf.softmax(tf.add(scores, opts.mask), -1);
  return tf.reshape(bmm(tf.reshape(probs, [B, nkv, group * T, S]), v), [B, nh, T, d]) as tf.Tensor4D;
}

interface Geometry {
  B: number;
  nkv: number;
  group: number;
  T: number;
  d: number;
  blocks: Array<{ start: number; size: number }>;
}

/** Rows [start, start+size) of every head of a [B, nkv, group, T, w] tensor, as [B, nkv, group·size, w]. */
function queryRows(t: tf.Tensor, g: Geometry, start: number, size: number): tf.Tensor {
  const w = t.shape[4]!;
  const rows = tf.slice(t, [0, 0, 0, start, 0], [g.B, g.nkv, g.group, size, w]);
  return tf.reshape(rows, [g.B, g.nkv, g.group * size, w]);
}

function keyRows(t: tf.Tensor, g: Geometry, start: number, size: number): tf.Tensor {
  return tf.slice(t, [0, 0, start, 0], [g.B, g.nkv, size, g.d]);
}

/**
 * Scores of query block qb against key block kb, [B, nkv, group·Tq, Tk], with the causal mask where the
 * block crosses the diagonal (a block wholly below it needs none; one wholly above is never computed).
 */
function blockScores(qRows: tf.Tensor, kRows: tf.Tensor, g: Geometry, qStart: number, qSize: number, kStart: number) {
  const kSize = kRows.shape[2]!;
  const s = batchMatMul(qRows, kRows, false, true);
  if (kStart + kSize - 1 <= qStart) return s;
  const mask = new Float32Array(qSize * kSize);
  for (let i = 0; i < qSize; i++)
    for (let j = 0; j < kSize; j++) if (kStart + j > qStart + i) mask[i * kSize + j] = MASKED;
  const s5 = tf.reshape(s, [g.B, g.nkv, g.group, qSize, kSize]);
  return tf.reshape(tf.add(s5, tf.tensor2d(mask, [qSize, kSize])), s.shape);
}

/** Replaces *acc with acc + next inside its own scope, so a loop's intermediates die each iteration. */
function accumulate(acc: tf.Tensor | null, next: () => tf.Tensor): tf.Tensor {
  const out = tf.tidy(() => (acc ? tf.add(acc, next()) : next()));
  acc?.dispose();
  return out;
}

function blockedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, block: number): tf.Tensor4D {
  const [B, nh, T, d] = q.shape;
  const nkv = k.shape[1];
  const blocks: Geometry['blocks'] = [];
  for (let s = 0; s < T; s += block) blocks.push({ start: s, size: Math.min(block, T - s) });
  const g: Geometry = { B, nkv, group: nh / nkv, T, d, blocks };
  const f = tf.customGrad(((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, save: tf.GradSaveFunc) => {
    const q5 = tf.reshape(qq, [B, nkv, g.group, T, d]);
    const outs: tf.Tensor[] = [];
    const lses: tf.Tensor[] = [];
    for (const qb of blocks) {
      const [out, lse] = tf.tidy(() => {
        const qRows = queryRows(q5, g, qb.start, qb.size);
        let m: tf.Tensor | null = null;
        let l: tf.Tensor | null = null;
        let acc: tf.Tensor | null = null;
        for (const kb of blocks) {
          if (kb.start > qb.start + qb.size - 1) break;
          const s = blockScores(qRows, keyRows(kk, g, kb.start, kb.size), g, qb.start, qb.size, kb.start);
          const mNew: tf.Tensor = m ? tf.maximum(m, tf.max(s, -1, true)) : tf.max(s, -1, true);
          const p = tf.exp(tf.sub(s, mNew));
          const pv = batchMatMul(p, keyRows(vv, g, kb.start, kb.size));
          if (m && l && acc) {
            const corr = tf.exp(tf.sub(m, mNew));
            l = tf.add(tf.mul(l, corr), tf.sum(p, -1, true));
            acc = tf.add(tf.mul(acc, corr), pv);
          } else {
            l = tf.sum(p, -1, true);
            acc = pv;
          }
          m = mNew;
        }
        const shape5 = [B, nkv, g.group, qb.size];
        return [tf.reshape(tf.div(acc!, l!), [...shape5, d]), tf.reshape(tf.add(m!, tf.log(l!)), [...shape5, 1])];
      });
      outs.push(out);
      lses.push(lse);
    }
    const out5 = tf.concat(outs, 3);
    const lse5 = tf.concat(lses, 3);
    tf.dispose([...outs, ...lses]);
    save([qq, kk, vv, out5, lse5]);
    return {
      value: tf.reshape(out5, [B, nh, T, d]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => blockedBackward(dy, saved, g),
    };
  }) as unknown as CustomGradFn);
  return f(q, k, v) as tf.Tensor4D;
}

/**
 * Flash attention's backward: with P = exp(S − lse) recomputed per block and D = rowsum(dO ∘ O),
 * dS = P ∘ (dO·Vᵀ − D), dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO (the group's query rows sum into their KV head).
 */
function blockedBackward(dy: tf.Tensor, saved: tf.Tensor[], g: Geometry): tf.Tensor[] {
  const [q, k, v, out5, lse5] = saved;
  const { B, nkv, group, T, d, blocks } = g;
  const dO5 = tf.reshape(dy, [B, nkv, group, T, d]);
  const D5 = tf.sum(tf.mul(dO5, out5), -1, true);
  const q5 = tf.reshape(q, [B, nkv, group, T, d]);
  const dK: Array<tf.Tensor | null> = blocks.map(() => null);
  const dV: Array<tf.Tensor | null> = blocks.map(() => null);
  const dQ: tf.Tensor[] = [];
  for (const qb of blocks) {
    const rows = (t: tf.Tensor) => queryRows(t, g, qb.start, qb.size);
    const [qRows, dORows, lseRows, dRows] = tf.tidy(() => [rows(q5), rows(dO5), rows(lse5), rows(D5)]);
    let dq: tf.Tensor | null = null;
    blocks.forEach((kb, j) => {
      if (kb.start > qb.start + qb.size - 1) return;
      const [p, dS] = tf.tidy(() => {
        const s = blockScores(qRows, keyRows(k, g, kb.start, kb.size), g, qb.start, qb.size, kb.start);
        const pp = tf.exp(tf.sub(s, lseRows));
        const dP = batchMatMul(dORows, keyRows(v, g, kb.start, kb.size), false, true);
        return [pp, tf.mul(pp, tf.sub(dP, dRows))];
      });
      dq = accumulate(dq, () => batchMatMul(dS, keyRows(k, g, kb.start, kb.size)));
      dK[j] = accumulate(dK[j], () => batchMatMul(dS, qRows, true, false));
      dV[j] = accumulate(dV[j], () => batchMatMul(p, dORows, true, false));
      tf.dispose([p, dS]);
    });
    dQ.push(tf.reshape(dq!, [B, nkv, group, qb.size, d]));
    tf.dispose([qRows, dORows, lseRows, dRows]);
  }
  const dq = tf.reshape(tf.concat(dQ, 3), [B, nkv * group, T, d]);
  return [dq, tf.concat(dK as tf.Tensor[], 2), tf.concat(dV as tf.Tensor[], 2)];
}
