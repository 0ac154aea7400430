// A host tensor kept in the dtype it was stored in (F32, F16 or BF16 bytes plus a shape). Frozen base
// weights live like this outside the engine's heap: a 1B-parameter model in BF16 is 2.5 GB of host
// memory instead of 5 GB of float32, and a pass widens one layer (or a row range of the embedding
// table) to float32 only while it needs it. Widening reuses decodeToFloat32's fast paths (a shift for
// BF16, a table lookup for F16, a byte copy for F32), so there is one conversion per dtype in the tree.
import { ChorusError } from '../errors.ts';
import { decodeToFloat32, DTYPE_SIZE, encodeFromNumbers } from '../formats/dtypes.ts';

const STORED_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type StoredDtype = (typeof STORED_DTYPES)[number];

export function isStoredDtype(s: unknown): s is StoredDtype {
  return typeof s === 'string' && (STORED_DTYPES as readonly string[]).includes(s);
}

export class StoredTensor {
  readonly dtype: StoredDtype;
  readonly shape: readonly number[];
  /** Little-endian element bytes; may be a view into a larger buffer (a safetensors file), never copied here. */
  readonly bytes: Uint8Array;

  constructor(dtype: StoredDtype, shape: readonly number[], bytes: Uint8Array, what = 'tensor') {
    if (!isStoredDtype(dtype)) {
      throw new ChorusError(`${what}: dtype ${String(dtype)} cannot be kept as a stored tensor (F32, F16 or BF16)`);
    }
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ChorusError(`${what}: bad shape [${shape.join(', ')}]`);
    }
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
    if (bytes.byteLength !== expected) {
      throw new ChorusError(
        `${what}: ${bytes.byteLength} bytes for ${dtype} [${shape.join(', ')}], expected ${expected}`,
      );
    }
    this.dtype = dtype;
    this.shape = [...shape];
    this.bytes = bytes;
  }

  /** Encodes float values (e.g. a freshly initialised or a float32 tensor) into `dtype`. */
  static fromFloat32(dtype: StoredDtype, shape: readonly number[], data: Float32Array, what = 'tensor'): StoredTensor {
    const bytes = encodeFromNumbers(dtype, data, what);
    // encodeFromNumbers returns a view of `data` for F32; copy so the caller's array may be reused.
    return new StoredTensor(
      dtype,
      shape,
      dtype === 'F32' && bytes.buffer === data.buffer ? bytes.slice() : bytes,
      what,
    );
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }

  /** Elements in one row (the product of every dimension but the first). */
  get rowSize(): number {
    return this.shape.slice(1).reduce((a, b) => a * b, 1);
  }

  /** All values as a fresh float32 array. */
  toFloat32(): Float32Array {
    return decodeToFloat32(this.dtype, this.bytes);
  }

  /** Rows [start, end) along the first dimension as a fresh float32 array (an embedding gather, a weight slab). */
  rowsToFloat32(start: number, end: number): Float32Array {
    const rows = this.shape[0] ?? 1;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > rows || start > end) {
      throw new ChorusError(`rows [${start}, ${end}) out of range for a tensor of ${rows} rows`);
    }
    const rowBytes = this.rowSize * DTYPE_SIZE[this.dtype];
    return decodeToFloat32(this.dtype, this.bytes.subarray(start * rowBytes, end * rowBytes));
  }

  /** The given rows (any order, repeats allowed) stacked as a fresh float32 array: an embedding lookup. */
  gatherRowsToFloat32(rows: ArrayLike<number>): Float32Array {
    const n = this.shape[0] ?? 1;
    const width = this.rowSize;
    const out = new Float32Array(rows.length * width);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (!Number.isInteger(r) || r < 0 || r >= n) throw new ChorusError(`row ${r} out of range for ${n} rows`);
      out.set(this.rowsToFloat32(r, r + 1), i * width);
    }
    return out;
  }
}
