// The wasm engine's products on BLAS (shared/tensor/native-gemm.ts, native/blas): every transpose
// form, batch broadcasting and batch ranks against float64 products of the same float32 inputs, the
// gradients of a product, the addon's own bounds checks, and the switch that turns it off.
// CI builds the addon and installs OpenBLAS, and sets CHORUS_REQUIRE_NATIVE_GEMM=1 so that a
// missing addon fails here instead of quietly testing XNNPACK twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { describeBackend, initEngine, productsTakeFlags, tf } from '../../shared/tensor/engine.ts';
import { nativeGemmInfo } from '../../shared/tensor/native-gemm.ts';
import { addonPath } from '../../shared/tensor/native-blas.ts';

await initEngine('wasm', { quiet: true });
const info = nativeGemmInfo();
const root = new URL('../..', import.meta.url).pathname;

test('native GEMM is active where the addon is built and a BLAS loads (required in CI)', () => {
  if (process.env.CHORUS_REQUIRE_NATIVE_GEMM === '1') assert.ok(info.active, `not active: ${info.detail}`);
  if (info.active) {
    assert.match(describeBackend(), /products on /);
    // OpenBLAS names the kernel it runs (OPENBLAS_CORETYPE can pin an older one), and the backend line says it.
    if (/openblas/i.test(info.library)) {
      assert.match(info.kernel, /^\w+$/);
      assert.ok(describeBackend().includes(`${info.kernel} kernel`), describeBackend());
    }
    assert.ok(info.threads >= 1);
    assert.equal(productsTakeFlags(), true);
  } else {
    // Without it the engine still works, and says why it is off.
    assert.ok(info.detail.length > 0);
    assert.equal(productsTakeFlags(), false);
  }
});

/** op(A)·op(B) in float64 for row-major float32 inputs of one batch entry. */
function reference(a: Float32Array, b: Float32Array, m: number, n: number, k: number, ta: boolean, tb: boolean) {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[ta ? p * m + i : i * k + p] * b[tb ? j * k + p : p * n + j];
      c[i * n + j] = s;
    }
  return c;
}

/** Largest |ours − float64| relative to the largest |float64|, over every batch entry. */
function relativeError(
  out: Float32Array,
  a: tf.Tensor,
  b: tf.Tensor,
  dims: { m: number; n: number; k: number; ta: boolean; tb: boolean },
) {
  const { m, n, k, ta, tb } = dims;
  const ad = a.dataSync() as Float32Array;
  const bd = b.dataSync() as Float32Array;
  const batchA = ad.length / (m * k);
  const batchB = bd.length / (k * n);
  const batch = out.length / (m * n);
  let err = 0;
  let scale = 0;
  for (let g = 0; g < batch; g++) {
    const ga = batchA === 1 ? 0 : g;
    const gb = batchB === 1 ? 0 : g;
    const ref = reference(
      ad.subarray(ga * m * k, (ga + 1) * m * k),
      bd.subarray(gb * k * n, (gb + 1) * k * n),
      m,
      n,
      k,
      ta,
      tb,
    );
    for (let i = 0; i < m * n; i++) {
      err = Math.max(err, Math.abs(out[g * m * n + i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
  }
  return err / scale;
}

// Sizes above the addon's small-product cut (32³ multiply-adds), odd so no dimension is a multiple
// of a SIMD width or block size.
const m = 67;
const n = 45;
const k = 83;
const cases: Array<{ name: string; aBatch: number[]; bBatch: number[] }> = [
  { name: '2-D', aBatch: [], bBatch: [] },
  { name: 'batch 3 × 3', aBatch: [3], bBatch: [3] },
  { name: 'batch [2, 3] × [2, 3]', aBatch: [2, 3], bBatch: [2, 3] },
  { name: 'batch 3 × 1 (b broadcast)', aBatch: [3], bBatch: [1] },
  { name: 'batch 1 × 3 (a broadcast)', aBatch: [1], bBatch: [3] },
  { name: 'batch 4 × 2-D b', aBatch: [4], bBatch: [] },
];
for (const c of cases)
  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    test(`products: ${c.name}, transposeA ${ta}, transposeB ${tb} equal float64 to 1e-6 relative`, () => {
      tf.tidy(() => {
        const a = tf.randomNormal([...c.aBatch, ...(ta ? [k, m] : [m, k])], 0, 1, 'float32', 11);
        const b = tf.randomNormal([...c.bBatch, ...(tb ? [n, k] : [k, n])], 0, 1, 'float32', 12);
        const out = tf.matMul(a, b, ta, tb);
        const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(c.aBatch, c.bBatch);
        assert.deepEqual(out.shape, [...batchShape, m, n]);
        const err = relativeError(out.dataSync() as Float32Array, a, b, { m, n, k, ta, tb });
        assert.ok(err <= 1e-6, `relative error ${err}`);
      });
    });
  }

test('gradients of a product (tfjs computes them with transposed products) equal the float64 formulas', () => {
  tf.tidy(() => {
    const a = tf.randomNormal([m, k], 0, 1, 'float32', 21);
    const b = tf.randomNormal([k, n], 0, 1, 'float32', 22);
    const w = tf.randomNormal([m, n], 0, 1, 'float32', 23);
    const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y), w)))([a, b]);
    // d/dA Σ (A·B)∘W = W·Bᵀ and d/dB = Aᵀ·W.
    assert.ok(relativeError(da.dataSync() as Float32Array, w, b, { m, n: k, k: n, ta: false, tb: true }) <= 1e-6);
    assert.ok(relativeError(db.dataSync() as Float32Array, a, w, { m: k, n, k: m, ta: true, tb: false }) <= 1e-6);
  });
});

test('the addon refuses matrices outside the memory, misaligned offsets and bad arguments', () => {
  const path = addonPath();
  if (!existsSync(path)) {
    assert.equal(info.active, false, 'active without an addon file');
    return;
  }
  const addon = createRequire(import.meta.url)(path) as {
    gemm: (...args: unknown[]) => void;
    describe: () => { available: boolean };
  };
  if (!addon.describe().available) return;
  const memory = new ArrayBuffer(4 * 64);
  // 4×4 · 4×4 at offsets 0, 64, 128 fits in 256 bytes; C at 192 ends exactly at the end.
  addon.gemm(memory, 0, 64, 192, 1, 4, 4, 4, false, false, 16, 16);
  assert.throws(() => addon.gemm(memory, 0, 64, 196, 1, 4, 4, 4, false, false, 16, 16), /outside the memory/);
  assert.throws(() => addon.gemm(memory, 0, 64, 128, 3, 4, 4, 4, false, false, 16, 16), /outside the memory/);
  assert.throws(() => addon.gemm(memory, 2, 64, 128, 1, 4, 4, 4, false, false, 16, 16), /aligned/);
  assert.throws(() => addon.gemm(memory, -4, 64, 128, 1, 4, 4, 4, false, false, 16, 16), /non-negative integers/);
  assert.throws(() => addon.gemm(memory, 0.5, 64, 128, 1, 4, 4, 4, false, false, 16, 16), /non-negative integers/);
  assert.throws(() => addon.gemm(new Float32Array(64), 0, 64, 128, 1, 4, 4, 4, false, false, 16, 16), /ArrayBuffer/);
  assert.throws(() => addon.gemm(memory, 0, 64), /12 arguments/);
  // A product that fits is exact on small integers.
  const f = new Float32Array(memory);
  f.fill(0);
  for (let i = 0; i < 16; i++) {
    f[i] = i; // A = [[0..3],[4..7],...]
    f[16 + i] = i % 5 === 0 ? 1 : 0; // B = identity
  }
  addon.gemm(memory, 0, 64, 192, 1, 4, 4, 4, false, false, 16, 16);
  assert.deepEqual(Array.from(f.subarray(48, 64)), Array.from(f.subarray(0, 16)));
});

test('a fixed BLAS thread count gives the same bits in every process; another count agrees to 1e-6', () => {
  if (!info.active) return;
  const digest = (threads: string) => {
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "(async () => { const e = await import('./shared/tensor/engine.ts'); await e.initEngine('wasm', { quiet: true }); const { tf } = e; const a = tf.randomNormal([300, 577], 0, 1, 'float32', 5); const b = tf.randomNormal([577, 250], 0, 1, 'float32', 6); const c = tf.randomNormal([4, 3, 130, 64], 0, 1, 'float32', 7); process.stdout.write(JSON.stringify([...tf.matMul(a, b).dataSync(), ...tf.matMul(c, c, false, true).dataSync()])); })();",
      ],
      { cwd: root, env: { ...process.env, CHORUS_BLAS_THREADS: threads }, encoding: 'utf8', maxBuffer: 1 << 28 },
    );
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as number[];
  };
  const two = digest('2');
  assert.deepEqual(digest('2'), two, 'two processes with 2 BLAS threads differ');
  const one = digest('1');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < one.length; i++) {
    diff = Math.max(diff, Math.abs(one[i] - two[i]));
    scale = Math.max(scale, Math.abs(two[i]));
  }
  const worst = diff / scale;
  assert.ok(worst <= 1e-6, `1 and 2 threads differ by ${worst} of the largest entry`);
});

test('CHORUS_NATIVE_GEMM=0 keeps the stock products, and the transpose-free op forms stay exact there', () => {
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', 'test/model/ops.test.ts', 'test/model/blocked.test.ts'],
    { cwd: root, env: { ...process.env, CHORUS_NATIVE_GEMM: '0', CHORUS_REQUIRE_NATIVE_GEMM: '' }, encoding: 'utf8' },
  );
  assert.equal(run.status, 0, `${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`);
  const probe = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      "(async () => { const e = await import('./shared/tensor/engine.ts'); await e.initEngine('wasm', { quiet: true }); const g = await import('./shared/tensor/native-gemm.ts'); console.log(JSON.stringify(g.nativeGemmInfo())); })();",
    ],
    { cwd: root, env: { ...process.env, CHORUS_NATIVE_GEMM: '0' }, encoding: 'utf8' },
  );
  assert.equal(probe.status, 0, probe.stderr);
  const off = JSON.parse(probe.stdout.trim().split('\n').pop()!) as { active: boolean; detail: string };
  assert.equal(off.active, false);
  assert.match(off.detail, /CHORUS_NATIVE_GEMM=0/);
});
