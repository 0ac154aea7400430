// The addon's host-side calls (native/blas, shared/tensor/native-blas.ts): LAPACK's QR against the
// Householder QR in JavaScript, float64 GEMM against triple loops, the extraction's ΔW = tuned − base
// against Math.fround and a float64 sum, writing a tensor in place, and the refusals of bad arguments.
// CI sets CHORUS_REQUIRE_NATIVE_GEMM=1: there a missing addon or LAPACK fails instead of testing the
// JavaScript paths against themselves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { householderQr, qrColumns, qrColumnsInPlace } from '../../shared/merge/linalg.ts';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { writeTensor } from '../../shared/tensor/host.ts';
import { nativeBlas, nativeQr } from '../../shared/tensor/native-blas.ts';
import { rng } from '../merge/helpers.ts';

await initEngine('wasm', { quiet: true });
const blas = nativeBlas();
const required = process.env.CHORUS_REQUIRE_NATIVE_GEMM === '1';

test('the addon and its LAPACK load where required (CI)', () => {
  if (required) {
    assert.ok(blas, 'no BLAS addon');
    assert.ok(nativeQr(), 'the BLAS library has no LAPACK QR');
  }
});

function randomColumns(len: number, count: number, seed: number): Float64Array {
  const g = rng(seed);
  return Float64Array.from({ length: len * count }, () => g.normal());
}

/** max |Q·R − A| for column sets: A's column c is cols[c·len …]. */
function reconstructionError(
  cols: Float64Array,
  qt: Float64Array,
  r: Float64Array,
  len: number,
  count: number,
  k: number,
) {
  let worst = 0;
  for (let c = 0; c < count; c++)
    for (let i = 0; i < len; i++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += qt[p * len + i] * r[p * count + c];
      worst = Math.max(worst, Math.abs(acc - cols[c * len + i]));
    }
  return worst;
}

function orthonormalityError(qt: Float64Array, k: number, len: number) {
  let worst = 0;
  for (let i = 0; i < k; i++)
    for (let j = 0; j <= i; j++) {
      let d = 0;
      for (let c = 0; c < len; c++) d += qt[i * len + c] * qt[j * len + c];
      worst = Math.max(worst, Math.abs(d - (i === j ? 1 : 0)));
    }
  return worst;
}

test("LAPACK's QR equals the JavaScript Householder QR: same R to rounding, Q orthonormal, QR = A", () => {
  if (!nativeQr()) return;
  const cases: [number, number, string][] = [
    [4096, 26, 'the randomized SVD’s tall sample'],
    [300, 40, 'tall'],
    [12, 30, 'wide (count > len)'],
    [50, 8, 'rank-deficient'],
    [40, 6, 'a zero column'],
  ];
  for (const [len, count, what] of cases) {
    const cols = randomColumns(len, count, len + count);
    if (what === 'rank-deficient') for (let i = 0; i < len; i++) cols[5 * len + i] = 3 * cols[2 * len + i];
    if (what === 'a zero column') cols.fill(0, 2 * len, 3 * len);
    const before = Float64Array.from(cols);
    const lapack = qrColumns(cols, len, count);
    const js = householderQr(cols, len, count);
    assert.deepEqual(cols, before, `${what}: qrColumns modified its input`);
    assert.equal(lapack.k, js.k, what);
    const k = lapack.k;
    assert.ok(orthonormalityError(lapack.qt, k, len) < 1e-13, `${what}: Q not orthonormal`);
    assert.ok(reconstructionError(cols, lapack.qt, lapack.r, len, count, k) < 1e-12, `${what}: QR ≠ A`);
    // A QR is unique up to the signs of R's rows (for full rank): LAPACK leaves a reflector out where
    // nothing lies below the diagonal, the JavaScript one flips the sign there.
    if (what === 'rank-deficient' || what === 'a zero column') continue; // trailing reflectors are free there
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < k; i++) {
      const sign = Math.sign(lapack.r[i * count + i]) * Math.sign(js.r[i * count + i]);
      for (let c = 0; c < count; c++) {
        scale = Math.max(scale, Math.abs(js.r[i * count + c]));
        diff = Math.max(diff, Math.abs(lapack.r[i * count + c] - sign * js.r[i * count + c]));
      }
    }
    assert.ok(
      diff <= 1e-12 * scale,
      `${what}: R differs from the JavaScript R by ${diff / scale} of its largest entry`,
    );
  }
});

test('qrColumnsInPlace returns Q in the buffer it was given', () => {
  const len = 64;
  const count = 5;
  const cols = randomColumns(len, count, 9);
  const copy = Float64Array.from(cols);
  const { qt, r, k } = qrColumnsInPlace(cols, len, count);
  assert.ok(reconstructionError(copy, qt, r, len, count, k) < 1e-12);
  if (nativeQr()) assert.equal(qt.buffer, cols.buffer, 'LAPACK path should work in place');
});

test('dgemm: the four transpose forms equal triple loops', () => {
  if (!blas) return;
  const [m, n, k] = [7, 5, 11];
  for (const ta of [false, true])
    for (const tb of [false, true]) {
      const a = randomColumns(m, k, 3);
      const b = randomColumns(k, n, 4);
      const c = new Float64Array(m * n).fill(Number.NaN);
      blas.dgemm(a, b, c, m, n, k, ta, tb);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += a[ta ? p * m + i : i * k + p] * b[tb ? j * k + p : p * n + j];
          assert.ok(Math.abs(c[i * n + j] - acc) < 1e-12, `ta=${ta} tb=${tb} (${i},${j})`);
        }
    }
});

test('difference: out = fround(tuned − base) exactly, and Σ out² to 1e-8, also into a view at an offset', () => {
  if (!blas) return;
  const n = 100_003; // not a multiple of any vector width
  const g = rng(11);
  const tuned = Float32Array.from({ length: n }, () => g.normal());
  const base = Float32Array.from({ length: n }, () => g.normal());
  const memory = new Float32Array(n + 37);
  const out = memory.subarray(37); // like a tensor in the engine's heap
  const total = blas.difference(tuned, base, out);
  let expected = 0;
  for (let i = 0; i < n; i++) {
    assert.equal(out[i], Math.fround(tuned[i] - base[i]), `entry ${i}`);
    expected += out[i] * out[i];
  }
  // Accumulated in double; OpenBLAS's dsdot kernel rounds each product to float32 first (2⁻²⁴ relative,
  // random signs), which leaves ~1e-10 on a sum of 10⁵ squares.
  assert.ok(Math.abs(total - expected) <= 1e-8 * expected, `Σ out² ${total} vs ${expected}`);
  assert.ok(
    memory.subarray(0, 37).every((x) => x === 0),
    'wrote before the view',
  );
});

test('the addon refuses short or mistyped arrays and bad sizes', () => {
  if (!blas) return;
  const f64 = new Float64Array(12);
  const f32 = new Float32Array(12);
  if (nativeQr()) {
    assert.throws(() => blas.qr(f64, 4, 4, null), /fewer than len·count/);
    assert.throws(() => blas.qr(f32 as unknown as Float64Array, 4, 3, null), /Float64Array/);
    assert.throws(() => blas.qr(f64, 4, 3, new Float64Array(8)), /r holds fewer/);
    assert.throws(() => blas.qr(f64, -1, 3, null), /non-negative integers/);
  }
  assert.throws(() => blas.difference(f32, f32, new Float32Array(11)), /differ in length/);
  assert.throws(() => blas.difference(f32, f64 as unknown as Float32Array, f32), /Float32Arrays/);
  assert.throws(() => blas.dgemm(f64, f64, new Float64Array(8), 3, 3, 4, false, false), /fewer numbers/);
  assert.throws(() => blas.dgemm(f64, f64, f64, 3, 4, 5, false, false), /fewer numbers/);
  assert.throws(() => blas.dgemm(f64, f64, f64, 3, 4, 0.5, false, false), /non-negative integers/);
});

test('writeTensor writes a tensor in place, and a failing fill leaves no tensor behind', () => {
  const before = tf.memory().numTensors;
  const { tensor, result } = writeTensor([3, 4], (out) => {
    out.forEach((_, i) => (out[i] = i * 0.5));
    return 'done';
  });
  assert.equal(result, 'done');
  assert.deepEqual(
    Array.from(tensor.dataSync()),
    Array.from({ length: 12 }, (_, i) => i * 0.5),
  );
  assert.deepEqual(tensor.shape, [3, 4]);
  tensor.dispose();
  assert.throws(() =>
    writeTensor([2, 2], () => {
      throw new Error('fill failed');
    }),
  );
  assert.equal(tf.memory().numTensors, before);
});
