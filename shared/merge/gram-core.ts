// The small float64 half of the SVD of a low-rank product U·V (U: m×R, V: R×n) computed from Gram
// matrices only, so that the tall products (the Grams UᵀU, VVᵀ and the final U·M, Mᵀ·V) can run on
// the tensor engine in float32 while everything of size R×R stays in float64.
//
// With V Vᵀ = R_vᵀ R_v (pivoted Cholesky), Vᵀ = Q_v R_v for some orthonormal Q_v, and
// (UV)ᵀ(UV) = Q_v (R_v G_u R_vᵀ) Q_vᵀ with G_u = UᵀU: the eigen-decomposition of the small symmetric
// M = R_v G_u R_vᵀ = Σ σ_j² y_j y_jᵀ gives the singular values and v_j = Q_v y_j. The vectors then
// follow without any inverse of R_v:
//   u_j = U·V·v_j / σ_j = U (R_vᵀ y_j) / σ_j          v_j = Vᵀ Uᵀ u_j / σ_j = Vᵀ (G_u R_vᵀ y_j) / σ_j²
// so a rank-deficient or ill-conditioned U or V (replicas that barely differ, a zero B) needs no
// special case: pivots below the noise floor are dropped and the vectors are still images of U and V.
// Tested against the Householder/Jacobi float64 path (svdLowRank) in test/merge.
import { symmetricEigen } from './symmetric-eigen.ts';

/**
 * Pivoted Cholesky of a symmetric positive semi-definite n×n matrix (row-major): G ≈ RᵀR with R k×n
 * (its columns in G's order, upper triangular up to the pivot permutation). Stops when the largest
 * remaining diagonal is at most `tol` times the largest diagonal of G, so k is the numerical rank.
 */
export function pivotedCholesky(g: Float64Array, n: number, tol: number): { r: Float64Array; k: number } {
  const r = new Float64Array(n * n);
  const d = new Float64Array(n);
  let dmax = 0;
  for (let i = 0; i < n; i++) {
    d[i] = g[i * n + i];
    if (d[i] > dmax) dmax = d[i];
  }
  const done = new Uint8Array(n);
  let k = 0;
  for (; k < n; k++) {
    let p = -1;
    for (let i = 0; i < n; i++) if (!done[i] && (p < 0 || d[i] > d[p])) p = i;
    if (p < 0 || !(d[p] > tol * dmax) || d[p] <= 0) break;
    done[p] = 1;
    const piv = Math.sqrt(d[p]);
    const row = k * n;
    r[row + p] = piv;
    for (let i = 0; i < n; i++) {
      if (done[i]) continue;
      let acc = g[p * n + i];
      for (let t = 0; t < k; t++) acc -= r[t * n + p] * r[t * n + i];
      const v = acc / piv;
      r[row + i] = v;
      d[i] -= v * v;
    }
  }
  return { r: r.subarray(0, k * n), k };
}

/** The small side of a low-rank SVD: σ, and the R×k matrices that turn U and V into the vectors. */
export interface GramSvd {
  /** All singular values of U·V (descending) up to the numerical rank of V. */
  s: Float64Array;
  /** Number of triples with vectors (≤ the `want` asked for; σ below the noise floor are left out). */
  k: number;
  /** R×k: column j maps U to u_j (u_j = U · left[:, j]). Row-major. */
  left: Float64Array;
  /** R×k: column j maps Vᵀ to v_j (v_j = Vᵀ · right[:, j]). Row-major. */
  right: Float64Array;
}

/**
 * SVD of U·diag(c)·V from gu = UᵀU and gv = VVᵀ (R×R, row-major; c scales U's columns and is applied
 * here in float64, so U itself can be the unscaled float32 factors). Vectors for the top `want` triples.
 * `tol` is the relative floor below which pivots and singular values count as noise (the Grams are
 * exact only to the precision of the products that made them).
 */
export function svdFromGrams(
  gu: Float64Array,
  gv: Float64Array,
  c: ArrayLike<number>,
  R: number,
  want: number,
  tol: number,
): GramSvd {
  const { r: rv, k: kv } = pivotedCholesky(gv, R, tol * tol);
  // t = G_u^c R_vᵀ (R×k_v) with G_u^c = diag(c) G_u diag(c); M = R_v t (k_v×k_v).
  const t = new Float64Array(R * kv);
  for (let i = 0; i < R; i++) {
    for (let j = 0; j < kv; j++) {
      let acc = 0;
      for (let p = 0; p < R; p++) acc += gu[i * R + p] * c[p] * rv[j * R + p];
      t[i * kv + j] = c[i] * acc;
    }
  }
  const m = new Float64Array(kv * kv);
  for (let i = 0; i < kv; i++) {
    for (let j = 0; j <= i; j++) {
      let acc = 0;
      for (let p = 0; p < R; p++) acc += rv[i * R + p] * t[p * kv + j];
      m[i * kv + j] = acc;
      m[j * kv + i] = acc;
    }
  }
  const eig = symmetricEigen(m, kv);
  const s = eig.values.map((x) => Math.sqrt(Math.max(x, 0)));
  let k = 0;
  while (k < Math.min(want, kv) && s[k] > tol * s[0]) k++;
  const left = new Float64Array(R * k);
  const right = new Float64Array(R * k);
  for (let j = 0; j < k; j++) {
    const inv = 1 / s[j];
    for (let p = 0; p < R; p++) {
      let lu = 0;
      let rt = 0;
      for (let q = 0; q < kv; q++) {
        const y = eig.vectors[q * kv + j];
        lu += rv[q * R + p] * y;
        rt += t[p * kv + q] * y;
      }
      left[p * k + j] = c[p] * lu * inv;
      right[p * k + j] = rt * inv * inv;
    }
  }
  return { s, k, left, right };
}
