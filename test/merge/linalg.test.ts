import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qrColumns, randomizedSvd, svdDense, svdLowRank, type Svd } from '../../shared/merge/linalg.ts';
import { mat, matmul, transpose } from '../../shared/merge/dense.ts';
import { combineEntrywise } from '../../shared/merge/combine.ts';
import { kthLargestInPlace, magnitudeCut } from '../../shared/merge/sparsify.ts';
import { frob2, maxAbsDiff, refSingularValues, refTrim, rng } from './helpers.ts';

function randomMat(m: number, n: number, seed: number) {
  const g = rng(seed);
  const d = new Float64Array(m * n);
  for (let i = 0; i < d.length; i++) d[i] = g.normal();
  return mat(m, n, d);
}

function rows(a: { rows: number; cols: number; data: Float64Array }): number[][] {
  return Array.from({ length: a.rows }, (_, i) => Array.from(a.data.subarray(i * a.cols, (i + 1) * a.cols)));
}

function reconstruct(svd: Svd, k = svd.k): Float64Array {
  const out = new Float64Array(svd.m * svd.n);
  for (let j = 0; j < k; j++)
    for (let i = 0; i < svd.m; i++)
      for (let c = 0; c < svd.n; c++) out[i * svd.n + c] += svd.s[j] * svd.ut[j * svd.m + i] * svd.vt[j * svd.n + c];
  return out;
}

function orthonormalRows(x: ArrayLike<number>, k: number, len: number): number {
  let worst = 0;
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      let d = 0;
      for (let c = 0; c < len; c++) d += x[i * len + c] * x[j * len + c];
      worst = Math.max(worst, Math.abs(d - (i === j ? 1 : 0)));
    }
  return worst;
}

test('matmul matches a triple loop', () => {
  const a = randomMat(5, 7, 1);
  const b = randomMat(7, 3, 2);
  const c = matmul(a, b);
  for (let i = 0; i < 5; i++)
    for (let j = 0; j < 3; j++) {
      let acc = 0;
      for (let p = 0; p < 7; p++) acc += a.data[i * 7 + p] * b.data[p * 3 + j];
      assert.ok(Math.abs(c.data[i * 3 + j] - acc) < 1e-12);
    }
});

test('Householder QR: Q orthonormal, R upper triangular, QR = A (tall, wide, rank-deficient)', () => {
  for (const [m, n, seed] of [
    [9, 4, 3],
    [4, 9, 4],
    [6, 6, 5],
  ]) {
    const a = randomMat(m, n, seed);
    if (seed === 5) for (let i = 0; i < m; i++) a.data[i * n + 3] = 2 * a.data[i * n + 1]; // dependent column
    const cols = transpose(a).data;
    const { qt, r, k } = qrColumns(cols, m, n);
    assert.equal(k, Math.min(m, n));
    assert.ok(orthonormalRows(qt, k, m) < 1e-12);
    for (let i = 0; i < k; i++) for (let j = 0; j < i && j < n; j++) assert.equal(r[i * n + j], 0);
    const back = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc += qt[p * m + i] * r[p * n + j];
        back[i * n + j] = acc;
      }
    assert.ok(maxAbsDiff(back, a.data) < 1e-12);
  }
});

test('Jacobi SVD: reconstruction, orthonormal factors, σ equal the Gram-eigenvalue reference', () => {
  for (const [m, n, seed] of [
    [8, 5, 6],
    [5, 8, 7],
    [30, 6, 8], // tall: QR first
  ]) {
    const a = randomMat(m, n, seed);
    const svd = svdDense(a);
    assert.ok(maxAbsDiff(reconstruct(svd), a.data) < 1e-12);
    assert.ok(orthonormalRows(svd.ut, svd.k, m) < 1e-12);
    assert.ok(orthonormalRows(svd.vt, svd.k, n) < 1e-12);
    const ref = refSingularValues(rows(a));
    assert.ok(maxAbsDiff(svd.s, ref) < 1e-9, `σ ${svd.s} vs ${ref}`);
  }
});

test('Eckart–Young: the rank-r truncation leaves exactly the dropped σ² as residual', () => {
  const a = randomMat(10, 7, 9);
  const svd = svdDense(a);
  const ref = refSingularValues(rows(a));
  for (const r of [1, 3, 5]) {
    const approx = reconstruct(svd, r);
    const resid = frob2(approx.map((x, i) => x - a.data[i]));
    const dropped = ref.slice(r).reduce((s, x) => s + x * x, 0);
    assert.ok(Math.abs(resid - dropped) < 1e-9 * (1 + dropped), `r=${r}: ${resid} vs ${dropped}`);
  }
});

test('low-rank SVD of U·V equals the dense SVD of the product', () => {
  const m = 40;
  const n = 30;
  const R = 6;
  const u = randomMat(m, R, 10);
  const v = randomMat(R, n, 11);
  const prod = matmul(u, v);
  const lr = svdLowRank(transpose(u).data, v.data, m, n, R);
  const dense = svdDense(prod);
  assert.equal(lr.k, R);
  assert.ok(maxAbsDiff(lr.s, dense.s.slice(0, R)) < 1e-10);
  assert.ok(dense.s[R] < 1e-10);
  assert.ok(maxAbsDiff(reconstruct(lr), prod.data) < 1e-10);
  assert.ok(orthonormalRows(lr.ut, lr.k, m) < 1e-12);
  assert.ok(orthonormalRows(lr.vt, lr.k, n) < 1e-12);
  // More stacked rank than the matrix has room for (R > n): still exact.
  const u2 = randomMat(5, 9, 12);
  const v2 = randomMat(9, 4, 13);
  const lr2 = svdLowRank(transpose(u2).data, v2.data, 5, 4, 9);
  assert.ok(maxAbsDiff(reconstruct(lr2), matmul(u2, v2).data) < 1e-10);
});

test('randomized SVD is close to exact on a matrix with decaying spectrum', () => {
  const m = 120;
  const n = 90;
  // A = Σ σ_j x_j y_jᵀ with σ_j = 0.7^j and random (non-orthogonal but generic) x, y.
  const g = rng(14);
  const a = new Float64Array(m * n);
  for (let j = 0; j < 40; j++) {
    const sig = 0.7 ** j;
    const x = Array.from({ length: m }, () => g.normal() / Math.sqrt(m));
    const y = Array.from({ length: n }, () => g.normal() / Math.sqrt(n));
    for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) a[i * n + c] += sig * x[i] * y[c];
  }
  const exact = svdDense(mat(m, n, a));
  const approx = randomizedSvd(mat(m, n, a), 8, { oversample: 8, powerIters: 2, seed: 3 });
  for (let j = 0; j < 8; j++) assert.ok(Math.abs(approx.s[j] - exact.s[j]) < 1e-6 * exact.s[0], `σ_${j}`);
  const resid = frob2(reconstruct(approx).map((x, i) => x - a[i]));
  const best = exact.s.slice(8).reduce((s, x) => s + x * x, 0);
  assert.ok(resid <= best * (1 + 1e-4) + 1e-18, `${resid} vs optimal ${best}`);
});

test('quickselect finds the k-th largest like a sort does, with duplicates', () => {
  const g = rng(15);
  const xs = Array.from({ length: 1001 }, () => Math.round(g.normal() * 5));
  const sorted = xs.slice().sort((p, q) => q - p);
  for (const k of [1, 2, 17, 500, 1000, 1001]) assert.equal(kthLargestInPlace(Float64Array.from(xs), k), sorted[k - 1]);
});

/** One tensor through the merge's accumulation loop with weight 1: exactly its sparsified form. */
function sparsified(
  x: Float32Array | Float64Array,
  kind: 'magnitude_prune' | 'dare_linear',
  density: number,
  seed = 0,
) {
  const out = x instanceof Float32Array ? new Float32Array(x.length) : new Float64Array(x.length);
  const spec = { kind, weights: [1], density, majoritySign: 'total' as const, seeds: [seed] };
  return combineEntrywise(1, out, (_, use) => use(x), spec);
}

test('magnitude pruning keeps exactly floor(density·n) entries, as a sort-based reference', () => {
  const g = rng(16);
  const xs = Array.from({ length: 257 }, () => Math.round(g.normal() * 3) / 2);
  for (const d of [0.01, 0.3, 0.5, 0.99, 1]) {
    // float64 values take the quickselect cut, float32 values the radix cut: both keep the same entries.
    const want = refTrim(xs, d).map(zeroSign);
    assert.deepEqual(Array.from(sparsified(Float64Array.from(xs), 'magnitude_prune', d), zeroSign), want);
    assert.deepEqual(Array.from(sparsified(Float32Array.from(xs), 'magnitude_prune', d), zeroSign), want);
  }
});

/** A kept −0 adds +0 to the merge's sum: compare zeros without their sign. */
const zeroSign = (v: number) => (v === 0 ? 0 : v);

test('radix cut on float32: ties, negative zeros, tiny and huge magnitudes, all against a sort', () => {
  const g = rng(17);
  const xs = Float32Array.from({ length: 5000 }, (_, i) =>
    i % 7 === 0
      ? 0.25
      : i % 11 === 0
        ? -0
        : i % 13 === 0
          ? g.normal() * 1e-30
          : g.normal() * 10 ** Math.round(g.normal() * 3),
  );
  for (const d of [0.001, 0.1, 0.5, 0.77, 0.999]) {
    const keep = Math.floor(d * xs.length);
    const sorted = Array.from(xs, Math.abs).sort((p, q) => q - p);
    const cut = magnitudeCut(xs, d);
    assert.equal(cut.threshold, sorted[keep - 1]);
    assert.equal(cut.ties, keep - sorted.filter((v) => v > cut.threshold).length);
    assert.deepEqual(
      Array.from(sparsified(xs, 'magnitude_prune', d), zeroSign),
      refTrim(Array.from(xs), d).map(zeroSign),
    );
  }
});

test('DARE keeps about density of the entries, rescaled by 1/density, and repeats per seed', () => {
  const x = sparsified(new Float64Array(20000).fill(2), 'dare_linear', 0.3, 42);
  const kept = x.filter((v) => v !== 0);
  assert.ok(Math.abs(kept.length / x.length - 0.3) < 0.02);
  assert.ok(kept.every((v) => Math.abs(v - 2 / 0.3) < 1e-12));
  const y = sparsified(new Float64Array(20000).fill(2), 'dare_linear', 0.3, 42);
  assert.deepEqual(x, y);
});
