// safetensors dtypes: sizes, decoding to float32 and encoding from numbers.
// Bit-level conversions are written out (not via a library) because F16/BF16/F8 have no native
// typed array in Node 20, and adapters and base models routinely ship in half precision.
// Byte order: safetensors is little-endian; decoding goes through DataView, so the host's byte
// order does not matter (F32 takes a fast path on little-endian hosts).

import { ChorusError } from '../errors.ts';

export type Dtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half (binary16) bits → number. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits → number (the top half of a float32). */
export function bf16BitsToNumber(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0];
}

/** number → IEEE half bits, round to nearest even, overflow to ±Inf, NaN kept. */
export function numberToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let bits = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && bits & 1)) bits++;
  return bits;
}

/** number → bfloat16 bits, round to nearest even, NaN kept quiet. */
export function numberToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0];
  if ((f & 0x7f800000) === 0x7f800000 && f & 0x7fffff) return ((f >>> 16) | 0x40) & 0xffff;
  const rounded = f + 0x7fff + ((f >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** FP8 E4M3 (the "FN" variant torch and safetensors use: no Inf, S.1111.111 is NaN). */
function f8e4m3BitsToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const frac = b & 7;
  if (exp === 15 && frac === 7) return NaN;
  if (exp === 0) return sign * frac * 2 ** -9;
  return sign * (1 + frac / 8) * 2 ** (exp - 7);
}

/** FP8 E5M2 is the top byte of an IEEE half. */
function f8e5m2BitsToNumber(b: number): number {
  return f16BitsToNumber((b & 0xff) << 8);
}

let F16_TABLE: Float32Array | null = null;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToNumber(h);
  }
  return F16_TABLE;
}

/** Decodes little-endian `bytes` of `dtype` into float32 (always a fresh, aligned array). */
export function decodeToFloat32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  if (dtype === 'F32' && LITTLE_ENDIAN_HOST) {
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const out = new Float32Array(n);
  if ((dtype === 'F16' || dtype === 'BF16') && LITTLE_ENDIAN_HOST) {
    // Half-precision base models are the common case: decode through a 16-bit view (a table
    // lookup for F16, a shift for BF16), ~10× faster than per-element DataView math.
    const u16 =
      bytes.byteOffset % 2 === 0
        ? new Uint16Array(bytes.buffer, bytes.byteOffset, n)
        : new Uint16Array(bytes.slice().buffer);
    if (dtype === 'F16') {
      const table = f16Table();
      for (let i = 0; i < n; i++) out[i] = table[u16[i]];
    } else {
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u32[i] = u16[i] << 16;
    }
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      break;
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToNumber(dv.getUint16(2 * i, true));
      break;
    case 'BF16': {
      // Widening BF16 is a 16-bit shift: do it on integer views, no float math per element.
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      break;
    }
    case 'F8_E4M3':
      for (let i = 0; i < n; i++) out[i] = f8e4m3BitsToNumber(bytes[i]);
      break;
    case 'F8_E5M2':
      for (let i = 0; i < n; i++) out[i] = f8e5m2BitsToNumber(bytes[i]);
      break;
    case 'I64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true));
      break;
    case 'U64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigUint64(8 * i, true));
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      break;
    case 'U32':
      for (let i = 0; i < n; i++) out[i] = dv.getUint32(4 * i, true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      break;
    case 'U8':
      for (let i = 0; i < n; i++) out[i] = bytes[i];
      break;
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = bytes[i] ? 1 : 0;
      break;
  }
  return out;
}

export type NumericData = ArrayLike<number> | BigInt64Array | BigUint64Array;

/** Encodes numbers as little-endian `dtype` bytes. */
export function encodeFromNumbers(dtype: Dtype, data: NumericData, what: string): Uint8Array {
  const n = data.length;
  if (dtype === 'F32' && LITTLE_ENDIAN_HOST && data instanceof Float32Array) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const out = new Uint8Array(n * DTYPE_SIZE[dtype]);
  if (dtype === 'BF16' && LITTLE_ENDIAN_HOST && data instanceof Float32Array) {
    // Whole models are written in BF16: round on integer views (as numberToBf16Bits), ~10× the per-element path.
    const bits = new Uint32Array(data.buffer, data.byteOffset, n);
    const u16 = new Uint16Array(out.buffer);
    for (let i = 0; i < n; i++) {
      const f = bits[i];
      u16[i] =
        (f & 0x7f800000) === 0x7f800000 && f & 0x7fffff
          ? ((f >>> 16) | 0x40) & 0xffff
          : ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
    }
    return out;
  }
  const dv = new DataView(out.buffer);
  const num = (i: number): number => Number((data as ArrayLike<number | bigint>)[i]);
  const big = (i: number): bigint => {
    const v = (data as ArrayLike<number | bigint>)[i];
    if (typeof v === 'bigint') return v;
    if (!Number.isInteger(v)) throw new ChorusError(`${what}: ${dtype} element ${i} is not an integer (${v})`);
    return BigInt(v);
  };
  switch (dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) dv.setFloat64(8 * i, num(i), true);
      break;
    case 'F32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, num(i), true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, numberToF16Bits(num(i)), true);
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, numberToBf16Bits(num(i)), true);
      break;
    case 'I64':
      for (let i = 0; i < n; i++) dv.setBigInt64(8 * i, big(i), true);
      break;
    case 'U64':
      for (let i = 0; i < n; i++) dv.setBigUint64(8 * i, big(i), true);
      break;
    case 'I32':
      for (let i = 0; i < n; i++) dv.setInt32(4 * i, num(i), true);
      break;
    case 'U32':
      for (let i = 0; i < n; i++) dv.setUint32(4 * i, num(i), true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) dv.setInt16(2 * i, num(i), true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, num(i), true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) dv.setInt8(i, num(i));
      break;
    case 'U8':
      for (let i = 0; i < n; i++) dv.setUint8(i, num(i));
      break;
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = num(i) ? 1 : 0;
      break;
    case 'F8_E4M3':
    case 'F8_E5M2':
      throw new ChorusError(`${what}: writing ${dtype} is not supported (pass raw bytes instead)`);
  }
  return out;
}
