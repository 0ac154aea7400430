// StoredTensor widening checked against a float64 decoding written from the format definitions
// (sign · mantissa · 2^exponent), over every 16-bit pattern, not against the decoder it reuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoredTensor } from '../../shared/tensor/stored.ts';

/** IEEE-style decoding of a (1, expBits, mantBits) pattern in float64. */
function reference(bits: number, expBits: number, mantBits: number): number {
  const sign = (bits >>> (expBits + mantBits)) & 1 ? -1 : 1;
  const exp = (bits >>> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  if (exp === (1 << expBits) - 1) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  return sign * (1 + mant / 2 ** mantBits) * 2 ** (exp - bias);
}

function allPatterns(): Uint8Array {
  const bytes = new Uint8Array(65536 * 2);
  for (let h = 0; h < 65536; h++) {
    bytes[2 * h] = h & 0xff;
    bytes[2 * h + 1] = h >>> 8;
  }
  return bytes;
}

function assertSame(got: Float32Array, want: (i: number) => number, label: string) {
  for (let i = 0; i < got.length; i++) {
    const w = want(i);
    if (Number.isNaN(w)) assert.ok(Number.isNaN(got[i]), `${label}[${i}]: expected NaN, got ${got[i]}`);
    else assert.equal(got[i], w, `${label}[${i}]`);
  }
}

for (const [dtype, expBits, mantBits] of [
  ['BF16', 8, 7],
  ['F16', 5, 10],
] as const) {
  test(`${dtype}: every bit pattern widens to its exact float64 value`, () => {
    const t = new StoredTensor(dtype, [256, 256], allPatterns());
    assert.equal(t.byteLength, 65536 * 2);
    assertSame(t.toFloat32(), (i) => reference(i, expBits, mantBits), dtype);
  });

  test(`${dtype}: row ranges and gathers give the same values as the whole tensor`, () => {
    const t = new StoredTensor(dtype, [1024, 64], allPatterns());
    assertSame(t.rowsToFloat32(17, 40), (i) => reference(17 * 64 + i, expBits, mantBits), `${dtype} rows`);
    const rows = [1023, 0, 5, 5, 512];
    const g = t.gatherRowsToFloat32(rows);
    assertSame(g, (i) => reference(rows[Math.floor(i / 64)] * 64 + (i % 64), expBits, mantBits), `${dtype} gather`);
  });
}

test('F32: values read at any byte offset of a larger buffer (a view into a file)', () => {
  const n = 1000;
  const src = new Float64Array(n).map((_, i) => Math.fround(Math.sin(i) * 10 ** ((i % 20) - 10)));
  const file = new Uint8Array(4 * n + 3);
  const dv = new DataView(file.buffer);
  src.forEach((v, i) => dv.setFloat32(3 + 4 * i, v, true));
  const t = new StoredTensor('F32', [10, 100], file.subarray(3));
  assertSame(t.toFloat32(), (i) => src[i], 'F32');
  assertSame(t.rowsToFloat32(9, 10), (i) => src[900 + i], 'F32 row');
});

test('BF16 at an odd byte offset and fromFloat32 rounding to nearest even', () => {
  // 1 + 2^-8 lies halfway between two BF16 values (1 and 1 + 2^-7): ties go to the even mantissa (1).
  const data = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 0]);
  const t = StoredTensor.fromFloat32('BF16', [4], data);
  const odd = new Uint8Array(t.byteLength + 1);
  odd.set(t.bytes, 1);
  const view = new StoredTensor('BF16', [4], odd.subarray(1));
  assert.deepEqual([...view.toFloat32()], [1, 1 + 2 ** -6, -2.5, 0]);
  const src = new Float32Array([1, 2, 3, 4]);
  const f = StoredTensor.fromFloat32('F32', [4], src);
  src[0] = 7; // F32 storage copies: changing the source must not change the stored tensor
  assert.deepEqual([...f.toFloat32()], [1, 2, 3, 4]);
});

test('bad sizes, shapes, dtypes and row ranges are errors naming the tensor', () => {
  assert.throws(
    () => new StoredTensor('BF16', [3, 4], new Uint8Array(23), 'w'),
    /w: 23 bytes for BF16 \[3, 4\], expected 24/,
  );
  assert.throws(() => new StoredTensor('I8' as 'F32', [1], new Uint8Array(1), 'w'), /w: dtype I8/);
  assert.throws(() => new StoredTensor('F32', [-1], new Uint8Array(0), 'w'), /w: bad shape/);
  const t = new StoredTensor('F16', [2, 2], new Uint8Array(8));
  assert.throws(() => t.rowsToFloat32(1, 3), /out of range/);
  assert.throws(() => t.gatherRowsToFloat32([2]), /row 2 out of range/);
});
