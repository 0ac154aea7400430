// Reusable host buffers for the merge kernels. A fresh 64 MiB typed array costs ~200 ms of page
// faults on first touch here (more than the product that fills it), so the big per-module arrays
// come from buffers kept for the life of the thread and grown when a larger module arrives. Contents
// are whatever the last user left: callers fill or zero what they take.

type Ctor<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number };

const buffers = new Map<string, ArrayBuffer>();

function take<T>(key: string, ctor: Ctor<T>, length: number): T {
  const bytes = length * ctor.BYTES_PER_ELEMENT;
  let buf = buffers.get(key);
  if (!buf || buf.byteLength < bytes) {
    buf = new ArrayBuffer(bytes);
    buffers.set(key, buf);
  }
  return new ctor(buf, 0, length);
}

/** A Float32Array of `length` backed by the kept buffer named `key` (not zeroed). */
export const scratchF32 = (key: string, length: number) => take(key, Float32Array, length);
/** A Float64Array of `length` backed by the kept buffer named `key` (not zeroed). */
export const scratchF64 = (key: string, length: number) => take(key, Float64Array, length);
/** A Uint8Array of `length` backed by the kept buffer named `key` (not zeroed). */
export const scratchU8 = (key: string, length: number) => take(key, Uint8Array, length);
/** A Uint16Array of `length` backed by the kept buffer named `key` (not zeroed). */
export const scratchU16 = (key: string, length: number) => take(key, Uint16Array, length);
/** A Uint32Array of `length` backed by the kept buffer named `key` (not zeroed). */
export const scratchU32 = (key: string, length: number) => take(key, Uint32Array, length);
