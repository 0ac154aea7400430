// The heavy products of merging on the tensor engine, in float32: Gram matrices and images of tall
// LoRA factors, dense deltas s·B·A, and the passes of the randomized SVD over a dense m×n matrix.
// Everything of size R×R or l×(m or n) with l = rank + oversampling stays in float64 on the host
// (pivoted Cholesky and the R×R eigen-decomposition in gram-core.ts, Householder QR of the l sample
// vectors (LAPACK's where native/blas loads), the SVD of the l×n projection).
// Each big product is a plain untransposed 2-D matMul where the engine's products are XNNPACK's (a
// transpose flag falls back to a slow loop nest there), so small operands are transposed first;
// with native GEMM (BLAS) a flag costs nothing and the randomized SVD's sampling uses one.
import type { LoraModule } from '../lora/types.ts';
import { productsTakeFlags, tf } from '../tensor/engine.ts';
import { hostView, writeTensor } from '../tensor/host.ts';
import { fillNormal } from '../tensor/random.ts';
import { svdFromGrams } from './gram-core.ts';
import { combineRows, qrColumnsInPlace, svdDense, truncateSvd, type RandomizedSvdOptions, type Svd } from './linalg.ts';
import { mat } from './dense.ts';
import { scratchF32, scratchF64 } from './scratch.ts';

/** Relative floor below which float32 Gram pivots and singular values count as rounding noise. */
const F32_NOISE = 1e-6;

/** Runs fn in an engine scope: every tensor it makes is disposed when it returns (results are host arrays). */
function scoped<T>(fn: () => T): T {
  tf.engine().startScope();
  try {
    return fn();
  } finally {
    tf.engine().endScope();
  }
}

/** out (cols×rows) = the transpose of a row-major rows×cols array. */
function transposeInto<T extends Float32Array | Float64Array>(
  src: ArrayLike<number>,
  rows: number,
  cols: number,
  out: T,
): T {
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[base + j];
  }
  return out;
}

function tensorT(src: ArrayLike<number>, rows: number, cols: number): tf.Tensor2D {
  return tf.tensor2d(transposeInto(src, rows, cols, new Float32Array(rows * cols)), [cols, rows]);
}

/** Stacked factors of K modules: U = [B_1 … B_K] (m×R) and Vᵀ = [A_1; …; A_K]ᵀ (n×R), row-major, and V as a tensor. */
function stackFactors32(mods: LoraModule[]) {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const R = mods.reduce((s, x) => s + x.rank, 0);
  const u = scratchF32('stack.u', m * R);
  const v = scratchF32('stack.v', R * n);
  const vt = scratchF32('stack.vt', n * R);
  let off = 0;
  for (const mod of mods) {
    const r = mod.rank;
    for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) u[i * R + off + j] = mod.b[i * r + j];
    v.set(mod.a, off * n);
    for (let j = 0; j < r; j++) for (let i = 0; i < n; i++) vt[i * R + off + j] = mod.a[j * n + i];
    off += r;
  }
  return { R, u, vt, v: tf.tensor2d(v, [R, n]) };
}

/** Rows per block of a Gram product: float32 sums stay short, the blocks are added in float64. */
const GRAM_BLOCK = 128;

/**
 * XᵀX (R×R, float64) for a row-major rows×R float32 matrix, as a float64 sum of engine products over
 * blocks of GRAM_BLOCK rows: one product over all 4096 rows has ~1e-6 relative error in float32, the
 * blocked sum ~5e-8, for about the same time.
 */
function gramBlocked(x: Float32Array, rows: number, R: number): Float64Array {
  const acc = new Float64Array(R * R);
  const xt = scratchF32('gram.xt', R * GRAM_BLOCK);
  for (let start = 0; start < rows; start += GRAM_BLOCK) {
    const len = Math.min(GRAM_BLOCK, rows - start);
    const block = x.subarray(start * R, (start + len) * R);
    const blockT = transposeInto(block, len, R, xt.subarray(0, R * len));
    scoped(() => {
      const g = hostView(tf.matMul(tf.tensor2d(blockT, [R, len]), tf.tensor2d(block, [len, R])));
      for (let i = 0; i < acc.length; i++) acc[i] += g[i];
    });
  }
  return acc;
}

/**
 * Top `want` singular triples of Σ_k coef_k B_k A_k without forming it: Grams and vector images on the
 * engine, the R×R algebra in float64. `sigma` holds every singular value (for the energy report).
 */
export function lowRankSvdEngine(mods: LoraModule[], coef: number[], want: number): { svd: Svd; sigma: Float64Array } {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  return scoped(() => {
    const { R, u, vt, v } = stackFactors32(mods);
    const gu = gramBlocked(u, m, R);
    const gv = gramBlocked(vt, n, R);
    const c = new Float64Array(R);
    let off = 0;
    mods.forEach((mod, k) => c.fill(coef[k], off, (off += mod.rank)));
    const core = svdFromGrams(gu, gv, c, R, want, F32_NOISE);
    const k = core.k;
    if (k === 0) return { svd: emptySvd(m, n), sigma: core.s };
    // u_j = U·left[:, j] (m×k, transposed to rows), v_j = (Vᵀ·right[:, j])ᵀ = right[:, j]ᵀ·V (k×n).
    // Each view is copied before the next engine call (which may move the heap).
    const us = transposeInto(
      hostView(tf.matMul(tf.tensor2d(u, [m, R]), tf.tensor2d(Float32Array.from(core.left), [R, k]))),
      m,
      k,
      new Float32Array(k * m),
    );
    const vs = Float32Array.from(hostView(tf.matMul(tensorT(core.right, R, k), v)));
    const svd: Svd = { m, n, k, s: core.s.slice(0, k), ut: us, vt: vs };
    return { svd, sigma: core.s };
  });
}

function emptySvd(m: number, n: number): Svd {
  return { m, n, k: 0, s: new Float64Array(0), ut: new Float64Array(0), vt: new Float64Array(0) };
}

/** s·B·A (m×n) on the engine; the caller reads it with hostView and disposes it. */
export function denseDeltaEngine(mod: LoraModule, factor: number): tf.Tensor2D {
  const { rank: r, outFeatures: m, inFeatures: n } = mod;
  const b = scratchF32('delta.b', m * r);
  for (let i = 0; i < b.length; i++) b[i] = factor * mod.b[i];
  return tf.tidy(() => tf.matMul(tf.tensor2d(b, [m, r]), tf.tensor2d(mod.a, [r, n])) as tf.Tensor2D);
}

/**
 * Randomized truncated SVD of the dense m×n matrix `a` (an engine tensor), the same algorithm and the
 * same Gaussian test matrix as linalg.randomizedSvd: float32 products on the engine, float64 Householder
 * QR of the l = rank + oversample sample vectors after every pass (LAPACK's where it loads), float64
 * SVD of the l×n projection.
 *
 * Each pass is written as a short, wide product whose l rows are the vectors the QR takes (the column
 * sets of A·X or Aᵀ·Q), so nothing is transposed on the host: Qᵀ·A as it stands, and A·X as Xᵀ·Aᵀ
 * where products take transpose flags. BLAS runs these as fast as the tall forms (11–12 ms each at
 * 4096² and l = 26). The small operands are written straight into the engine's memory, and each
 * pass's result lands in one of two kept host buffers that its QR then works on in place: a fresh
 * buffer per step cost more in page faults than the QR itself.
 */
export function randomizedSvdEngine(a: tf.Tensor2D, rank: number, opts: RandomizedSvdOptions = {}): Svd {
  const [m, n] = a.shape;
  const l = Math.min(m, n, rank + (opts.oversample ?? 10));
  const q = opts.powerIters ?? 2;
  let turn = 0;
  const download = (t: tf.Tensor) => {
    const view = hostView(t);
    const out = scratchF64(`rsvd.pass${(turn ^= 1)}`, view.length);
    for (let i = 0; i < view.length; i++) out[i] = view[i];
    return out;
  };
  const upload = (x: Float64Array, k: number, len: number) =>
    writeTensor([k, len], (out) => {
      for (let i = 0; i < out.length; i++) out[i] = x[i];
    }).tensor as tf.Tensor2D;
  // The k column sets of A·X for X given as rows (k×n) on the engine.
  const sample = (xt: tf.Tensor2D) =>
    scoped(() =>
      download(productsTakeFlags() ? tf.matMul(xt, a, false, true) : tf.transpose(tf.matMul(a, tf.transpose(xt)))),
    );
  // Qᵀ·A (k×n) for an orthonormal Q given as rows (k×m): its rows are the column sets of Aᵀ·Q.
  const project = (qt: Float64Array, k: number) => scoped(() => download(tf.matMul(upload(qt, k, m), a)));
  const omegaT = () => writeTensor([l, n], (out) => fillNormal(out, opts.seed ?? 0x5eed, 1)).tensor as tf.Tensor2D;
  const sampled = scoped(() => sample(omegaT()));
  let qr = qrColumnsInPlace(sampled, m, l);
  for (let it = 0; it < q; it++) {
    const qz = qrColumnsInPlace(project(qr.qt, qr.k), n, qr.k);
    const resampled = scoped(() => sample(upload(qz.qt, qz.k, n)));
    qr = qrColumnsInPlace(resampled, m, qz.k);
  }
  const inner = svdDense(mat(qr.k, n, project(qr.qt, qr.k)));
  const k = Math.min(rank, inner.k);
  return {
    m,
    n,
    k,
    s: inner.s.slice(0, k),
    ut: combineRows(inner.ut, k, qr.k, qr.qt, m),
    vt: inner.vt.slice(0, k * n),
  };
}

export interface EngineSvdOptions extends RandomizedSvdOptions {
  /** Exact float64 Jacobi SVD when min(m, n) is at most this (default 256). */
  exactBelow?: number;
}

/** Top-`rank` SVD of a dense row-major float32 matrix: exact float64 when small, randomized on the engine when large. */
export function truncatedSvdEngine(
  data: Float32Array,
  m: number,
  n: number,
  rank: number,
  opts: EngineSvdOptions = {},
) {
  const small = Math.min(m, n) <= (opts.exactBelow ?? 256);
  if (small || rank + (opts.oversample ?? 10) >= Math.min(m, n)) {
    return truncateSvd(svdDense(mat(m, n, Float64Array.from(data))), rank);
  }
  const a = tf.tensor2d(data, [m, n]);
  try {
    return randomizedSvdEngine(a, rank, opts);
  } finally {
    a.dispose();
  }
}
