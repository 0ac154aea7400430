// The float64 small cores of the engine path, checked on their own with exact (float64) inputs: the
// Gram route to the SVD of U·V against the Householder/Jacobi route, and the symmetric
// eigen-decomposition against the test helpers' Jacobi eigenvalues.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pivotedCholesky, svdFromGrams } from '../../shared/merge/gram-core.ts';
import { svdLowRank } from '../../shared/merge/linalg.ts';
import { symmetricEigen } from '../../shared/merge/symmetric-eigen.ts';
import { maxAbsDiff, rng, symmetricEigenvalues } from './helpers.ts';

/** XᵀX of a row-major rows×cols matrix. */
function gram(x: Float64Array, rows: number, cols: number): Float64Array {
  const g = new Float64Array(cols * cols);
  for (let i = 0; i < rows; i++)
    for (let p = 0; p < cols; p++) for (let q = 0; q < cols; q++) g[p * cols + q] += x[i * cols + p] * x[i * cols + q];
  return g;
}

test('symmetric eigen-decomposition: Jacobi eigenvalues, A v = λ v, orthonormal vectors, descending', () => {
  const g = rng(3);
  for (const n of [1, 2, 7, 40]) {
    const c = Float64Array.from({ length: n * n }, () => g.normal());
    const a = gram(c, n, n);
    const { values, vectors } = symmetricEigen(a, n);
    const rows = Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * n, (i + 1) * n)));
    assert.ok(maxAbsDiff(values, symmetricEigenvalues(rows)) < 1e-9 * values[0], `n=${n}`);
    for (let j = 0; j < n; j++) {
      if (j > 0) assert.ok(values[j] <= values[j - 1]);
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let k = 0; k < n; k++) av += a[i * n + k] * vectors[k * n + j];
        assert.ok(Math.abs(av - values[j] * vectors[i * n + j]) < 1e-10 * values[0]);
      }
      for (let q = 0; q < n; q++) {
        let dot = 0;
        for (let k = 0; k < n; k++) dot += vectors[k * n + j] * vectors[k * n + q];
        assert.ok(Math.abs(dot - (j === q ? 1 : 0)) < 1e-12);
      }
    }
  }
});

test('pivoted Cholesky: RᵀR = G, and the numerical rank of a rank-deficient G', () => {
  const g = rng(4);
  const x = Float64Array.from({ length: 30 * 6 }, () => g.normal());
  // Column 1 repeats column 0 and column 5 is 2 + 3: rank 4 (the early repeat needs the pivoting).
  for (let i = 0; i < 30; i++) {
    x[i * 6 + 1] = x[i * 6];
    x[i * 6 + 5] = x[i * 6 + 2] + x[i * 6 + 3];
  }
  const gm = gram(x, 30, 6);
  const { r, k } = pivotedCholesky(gm, 6, 1e-12);
  assert.equal(k, 4);
  const rtr = new Float64Array(36);
  for (let p = 0; p < 6; p++)
    for (let q = 0; q < 6; q++) for (let t = 0; t < k; t++) rtr[p * 6 + q] += r[t * 6 + p] * r[t * 6 + q];
  assert.ok(maxAbsDiff(rtr, gm) < 1e-10);
});

test('SVD of U·diag(c)·V from its Grams equals the QR/Jacobi route (σ, and the rank-r product)', () => {
  const g = rng(5);
  const [m, n, R] = [25, 19, 9];
  const u = Float64Array.from({ length: m * R }, () => g.normal());
  const v = Float64Array.from({ length: R * n }, () => g.normal());
  // A duplicated column pair makes U rank-deficient; c has a negative and a tiny coefficient.
  for (let i = 0; i < m; i++) u[i * R + 8] = u[i * R + 7];
  const c = [1, 0.5, -0.7, 2, 1e-4, 1, 1, 0.3, 0.3];
  const vt = new Float64Array(n * R);
  for (let p = 0; p < R; p++) for (let j = 0; j < n; j++) vt[j * R + p] = v[p * n + j];
  const core = svdFromGrams(gram(u, m, R), gram(vt, n, R), c, R, 4, 1e-12);
  // Reference: columns of U·diag(c) and rows of V as column sets.
  const uCols = new Float64Array(R * m);
  for (let p = 0; p < R; p++) for (let i = 0; i < m; i++) uCols[p * m + i] = c[p] * u[i * R + p];
  const ref = svdLowRank(uCols, v, m, n, R);
  assert.ok(maxAbsDiff(core.s.slice(0, 8), ref.s.slice(0, 8)) < 1e-10 * ref.s[0]);
  assert.equal(core.k, 4);
  // Σ_{j<4} σ_j u_j v_jᵀ from both routes.
  const product = (vec: (j: number, i: number, side: 'u' | 'v') => number) => {
    const out = new Float64Array(m * n);
    for (let j = 0; j < 4; j++)
      for (let i = 0; i < m; i++)
        for (let q = 0; q < n; q++) out[i * n + q] += ref.s[j] * vec(j, i, 'u') * vec(j, q, 'v');
    return out;
  };
  const viaGrams = product((j, i, side) => {
    let acc = 0;
    if (side === 'u') for (let p = 0; p < R; p++) acc += u[i * R + p] * core.left[p * 4 + j];
    else for (let p = 0; p < R; p++) acc += v[p * n + i] * core.right[p * 4 + j];
    return acc;
  });
  const viaQr = product((j, i, side) => (side === 'u' ? ref.ut[j * m + i] : ref.vt[j * n + i]));
  assert.ok(maxAbsDiff(viaGrams, viaQr) < 1e-9 * ref.s[0]);
});
