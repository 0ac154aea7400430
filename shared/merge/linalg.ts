// Float64 SVD reference for adapter merging and extraction: Householder QR, one-sided Jacobi SVD,
// the SVD of a low-rank product U·V without forming it, and randomized SVD for big dense matrices.
// Plain loops over Float64Array, except the QR and the combinations of basis rows: LAPACK's
// dgeqrf/dorgqr and BLAS's dgemm (through native/blas) where the addon loads, 5–10× faster on the
// tall-thin shapes merging makes, else the same algorithms in JavaScript. This is the float64 reference path (`precision: 'float64'`) and the
// home of the small cores that the float32 engine path keeps in float64 (the l×l and R×R SVDs, the
// QR of the randomized SVD's sample vectors). The dense matrix helpers it uses are in dense.ts.
//
// Layout conventions (all row-major; Mat: see dense.ts):
//   "column sets"  a Float64Array holding `count` vectors of length `len`, one after another; QR and
//                  Jacobi work on them because their inner loops then walk contiguous memory.
//   Svd            { m, n, k, s, ut, vt }: A (m×n) = Σ_j s[j] · u_j v_jᵀ, with ut holding u_j as rows
//                  (k×m) and vt holding v_j as rows (k×n); s is sorted descending. The vectors are
//                  float32 when they come from the tensor engine (engine-linalg.ts).
import { SplitMix32 } from '../tensor/random.ts';
import { nativeBlas, nativeQr } from '../tensor/native-blas.ts';
import { mat, mulByThinT, mulTransposedThin, transpose, type Mat } from './dense.ts';

export interface Svd {
  m: number;
  n: number;
  k: number;
  s: Float64Array;
  ut: Float64Array | Float32Array;
  vt: Float64Array | Float32Array;
}

export interface Qr {
  qt: Float64Array;
  r: Float64Array;
  k: number;
}

/**
 * Thin Householder QR of the len×count matrix whose columns are the `count` vectors of `cols`.
 * Returns qt (k×len, rows = orthonormal columns of Q) and r (k×count, upper triangular),
 * k = min(len, count). Rank-deficient inputs are fine: R gets zeros, Q stays orthonormal.
 * `cols` is not modified. LAPACK's where it loads (same reflector signs, so R agrees to rounding).
 */
export function qrColumns(cols: Float64Array, len: number, count: number): Qr {
  // LAPACK writes in place, so it gets a copy; the JavaScript QR never writes to its input.
  return qrColumnsInPlace(nativeQr() ? Float64Array.from(cols.subarray(0, len * count)) : cols, len, count);
}

/**
 * qrColumns that may overwrite `cols` and return Q in it (qt aliases cols when k = count): the
 * randomized SVD's passes reuse their buffers instead of allocating fresh ones, whose first touch
 * costs more than LAPACK's QR of them.
 */
export function qrColumnsInPlace(cols: Float64Array, len: number, count: number): Qr {
  const lapack = nativeQr();
  if (!lapack) return householderQr(cols, len, count);
  // LAPACK's layout is column-major with leading dimension len: exactly the column sets.
  const r = new Float64Array(Math.min(len, count) * count);
  const k = lapack(cols, len, count, r);
  return { qt: k === count ? cols.subarray(0, k * len) : cols.slice(0, k * len), r, k };
}

/** qrColumns in JavaScript: the fallback without LAPACK, and the independent check of LAPACK's in tests. */
export function householderQr(cols: Float64Array, len: number, count: number): Qr {
  const w = Float64Array.from(cols);
  const k = Math.min(len, count);
  const vs: Float64Array[] = [];
  const betas = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    const base = j * len;
    let norm2 = 0;
    for (let i = j; i < len; i++) norm2 += w[base + i] * w[base + i];
    const v = new Float64Array(len - j);
    vs.push(v);
    if (norm2 === 0) continue;
    const norm = Math.sqrt(norm2);
    const x0 = w[base + j];
    const alpha = x0 >= 0 ? -norm : norm;
    v[0] = x0 - alpha;
    for (let i = j + 1; i < len; i++) v[i - j] = w[base + i];
    let vv = 0;
    for (let i = 0; i < v.length; i++) vv += v[i] * v[i];
    if (vv === 0) continue;
    const beta = 2 / vv;
    betas[j] = beta;
    w[base + j] = alpha;
    for (let i = j + 1; i < len; i++) w[base + i] = 0;
    for (let c = j + 1; c < count; c++) {
      const cb = c * len + j;
      let dot = 0;
      for (let i = 0; i < v.length; i++) dot += v[i] * w[cb + i];
      const f = beta * dot;
      if (f === 0) continue;
      for (let i = 0; i < v.length; i++) w[cb + i] -= f * v[i];
    }
  }
  const r = new Float64Array(k * count);
  for (let c = 0; c < count; c++) {
    for (let i = 0; i <= Math.min(c, k - 1); i++) r[i * count + c] = w[c * len + i];
  }
  // Q = H_0 … H_{k-1} applied to the first k columns of the identity.
  const qt = new Float64Array(k * len);
  for (let c = 0; c < k; c++) {
    const qb = c * len;
    qt[qb + c] = 1;
    for (let j = Math.min(c, k - 1); j >= 0; j--) {
      const beta = betas[j];
      if (beta === 0) continue;
      const v = vs[j];
      let dot = 0;
      for (let i = 0; i < v.length; i++) dot += v[i] * qt[qb + j + i];
      const f = beta * dot;
      if (f === 0) continue;
      for (let i = 0; i < v.length; i++) qt[qb + j + i] -= f * v[i];
    }
  }
  return { qt, r, k };
}

/**
 * One-sided (Hestenes) Jacobi on the len×count matrix M whose columns are the vectors of `cols`:
 * M = Σ_j σ_j left_j right_jᵀ. Rotations are applied until every pair of columns is orthogonal to
 * machine precision, which gives singular values with high relative accuracy.
 */
function jacobiColumns(cols: Float64Array, len: number, count: number) {
  const w = Float64Array.from(cols);
  const v = new Float64Array(count * count);
  for (let i = 0; i < count; i++) v[i * count + i] = 1;
  const eps = 1e-15;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let p = 0; p < count - 1; p++) {
      const pb = p * len;
      for (let q = p + 1; q < count; q++) {
        const qb = q * len;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < len; i++) {
          const x = w[pb + i];
          const y = w[qb + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < len; i++) {
          const x = w[pb + i];
          const y = w[qb + i];
          w[pb + i] = c * x - s * y;
          w[qb + i] = s * x + c * y;
        }
        const vp = p * count;
        const vq = q * count;
        for (let i = 0; i < count; i++) {
          const x = v[vp + i];
          const y = v[vq + i];
          v[vp + i] = c * x - s * y;
          v[vq + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const sig = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    let n2 = 0;
    for (let i = 0; i < len; i++) n2 += w[j * len + i] * w[j * len + i];
    sig[j] = Math.sqrt(n2);
  }
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => sig[b] - sig[a]);
  const s = new Float64Array(count);
  const left = new Float64Array(count * len);
  const right = new Float64Array(count * count);
  order.forEach((src, dst) => {
    s[dst] = sig[src];
    if (sig[src] > 0) {
      const inv = 1 / sig[src];
      for (let i = 0; i < len; i++) left[dst * len + i] = w[src * len + i] * inv;
    }
    right.set(v.subarray(src * count, (src + 1) * count), dst * count);
  });
  return { s, left, right };
}

/** Full thin SVD of a dense matrix (exact to float64 rounding). Cost ~ sweeps · min(m,n)² · max(m,n). */
export function svdDense(a: Mat): Svd {
  const { rows: m, cols: n } = a;
  if (m >= n) {
    // The columns of A are the rows of Aᵀ.
    const { s, left, right, k } = svdOfColumns(transpose(a).data, m, n);
    return { m, n, k, s, ut: left, vt: right };
  }
  // Wide: the rows of A are the columns of Aᵀ (n×m), as they lie; Aᵀ = Σ σ left rightᵀ, so A = Σ σ right leftᵀ.
  const { s, left, right, k } = svdOfColumns(a.data, n, m);
  return { m, n, k, s, ut: right, vt: left };
}

/**
 * SVD of the len×count matrix M whose columns are the vectors of `cols`: M = Σ_j s_j left_j right_jᵀ
 * (left: k×len, right: k×count, as rows). Tall ones go through QR first: M = Q R, the SVD of the
 * small R, then left = Q·left_R (fewer Jacobi flops on long columns).
 */
function svdOfColumns(
  cols: Float64Array,
  len: number,
  count: number,
): { k: number; s: Float64Array; left: Float64Array; right: Float64Array } {
  if (len > 2 * count && count > 0) {
    const { qt, r, k } = qrColumns(cols, len, count);
    const inner = svdOfColumns(transpose(mat(k, count, r)).data, k, count);
    return { k: inner.k, s: inner.s, left: combineRows(inner.left, inner.k, k, qt, len), right: inner.right };
  }
  return { k: count, ...jacobiColumns(cols, len, count) };
}

/**
 * SVD of the product U·V (U: m×R, V: R×n) without forming it: U = Q_u R_u, Vᵀ = Q_v R_v, then the
 * SVD of the small core R_u R_vᵀ = X Σ Yᵀ gives U·V = (Q_u X) Σ (Q_v Y)ᵀ. Cost O((m+n)R²).
 * `uCols` holds the R columns of U (R×m), `vRows` the R rows of V (R×n).
 */
export function svdLowRank(uCols: Float64Array, vRows: Float64Array, m: number, n: number, rank: number): Svd {
  const qu = qrColumns(uCols, m, rank);
  const qv = qrColumns(vRows, n, rank);
  // core = R_u (ku×R) · R_vᵀ (R×kv)
  const core = new Float64Array(qu.k * qv.k);
  for (let i = 0; i < qu.k; i++) {
    for (let j = 0; j < qv.k; j++) {
      let acc = 0;
      for (let p = 0; p < rank; p++) acc += qu.r[i * rank + p] * qv.r[j * rank + p];
      core[i * qv.k + j] = acc;
    }
  }
  const inner = svdDense(mat(qu.k, qv.k, core));
  return {
    m,
    n,
    k: inner.k,
    s: inner.s,
    ut: combineRows(inner.ut, inner.k, qu.k, qu.qt, m),
    vt: combineRows(inner.vt, inner.k, qv.k, qv.qt, n),
  };
}

/** out (k×len) = coef (k×c) · basis (c×len): rows of out are combinations of basis rows (BLAS's dgemm where it loads). */
export function combineRows(
  coef: ArrayLike<number>,
  k: number,
  c: number,
  basis: Float64Array,
  len: number,
): Float64Array {
  const out = new Float64Array(k * len);
  const blas = nativeBlas();
  if (blas && coef instanceof Float64Array) {
    blas.dgemm(coef, basis, out, k, len, c, false, false);
    return out;
  }
  for (let j = 0; j < k; j++) {
    for (let p = 0; p < c; p++) {
      const f = coef[j * c + p];
      if (f === 0) continue;
      const bb = p * len;
      const ob = j * len;
      for (let i = 0; i < len; i++) out[ob + i] += f * basis[bb + i];
    }
  }
  return out;
}

export interface RandomizedSvdOptions {
  /** Extra sample vectors beyond the rank (Halko et al. suggest 5–10). */
  oversample?: number;
  /** Power (subspace) iterations; each sharpens a slowly decaying spectrum. */
  powerIters?: number;
  seed?: number;
}

/**
 * Randomized truncated SVD (Halko, Martinsson, Tropp 2011, alg. 4.4 with re-orthonormalisation at
 * every pass): returns the top `rank` triples of A. Error shrinks like (σ_{r+p+1}/σ_r)^(2q+1).
 */
export function randomizedSvd(a: Mat, rank: number, opts: RandomizedSvdOptions = {}): Svd {
  const { rows: m, cols: n } = a;
  const l = Math.min(m, n, rank + (opts.oversample ?? 10));
  const q = opts.powerIters ?? 2;
  const rng = new SplitMix32(opts.seed ?? 0x5eed);
  const omegaT = new Float64Array(l * n);
  for (let i = 0; i < omegaT.length; i++) omegaT[i] = rng.normal();
  let qt = qrColumns(mulByThinT(a, omegaT, l), m, l).qt;
  for (let it = 0; it < q; it++) {
    const zt = mulTransposedThin(qt, l, a); // (AᵀQ)ᵀ, l×n
    const qz = qrColumns(zt, n, l).qt;
    qt = qrColumns(mulByThinT(a, qz, l), m, l).qt;
  }
  const b = mulTransposedThin(qt, l, a); // B = QᵀA, l×n
  const inner = svdDense(mat(l, n, b));
  const k = Math.min(rank, inner.k);
  const ut = combineRows(inner.ut, k, l, qt, m);
  return { m, n, k, s: inner.s.slice(0, k), ut, vt: inner.vt.slice(0, k * n) };
}

export interface TruncatedSvdOptions extends RandomizedSvdOptions {
  /** Use the exact Jacobi SVD when min(m, n) is at most this (default 256). */
  exactBelow?: number;
}

/** Top-`rank` SVD of a dense matrix: exact when small, randomized when large. */
export function truncatedSvd(a: Mat, rank: number, opts: TruncatedSvdOptions = {}): Svd {
  const small = Math.min(a.rows, a.cols) <= (opts.exactBelow ?? 256);
  const full = small || rank + (opts.oversample ?? 10) >= Math.min(a.rows, a.cols);
  const svd = full ? svdDense(a) : randomizedSvd(a, rank, opts);
  return truncateSvd(svd, rank);
}

export function truncateSvd(svd: Svd, rank: number): Svd {
  const k = Math.min(rank, svd.k);
  if (k === svd.k) return svd;
  return {
    m: svd.m,
    n: svd.n,
    k,
    s: svd.s.slice(0, k),
    ut: svd.ut.slice(0, k * svd.m),
    vt: svd.vt.slice(0, k * svd.n),
  };
}
