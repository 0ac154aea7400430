// Host access to float32 tensors without fresh buffers. `dataSync()` returns a newly allocated copy;
// for a 4096×4096 tensor that is 64 MiB whose first touch costs ~200 ms of page faults on the
// project's machines, several times the product that made it. On the wasm backend the tensor already
// lives in the module's heap, so a Float32Array view of that memory reads it for free, and a new
// tensor can be written there in place instead of being built on the host and copied in.
import { tf } from './engine.ts';

interface WasmInternals {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number | null } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

/**
 * The values of a float32 tensor, read-only. On wasm a view of the engine's heap: valid until the next
 * engine call (one may grow the heap and detach it) and until the tensor is disposed. Elsewhere the
 * result of `dataSync()`.
 */
export function hostView(t: tf.Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`hostView: tensor is ${t.dtype}, expected float32`);
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmInternals;
    const offset = backend.dataIdMap.get(t.dataId)?.memoryOffset;
    if (typeof offset === 'number') return new Float32Array(backend.wasm.HEAPU8.buffer, offset, t.size);
  }
  return t.dataSync() as Float32Array;
}

/**
 * A new float32 tensor whose values `fill` writes. On wasm `fill` writes straight into the engine's
 * heap (no host buffer, no copy: for a 4096² delta that saves a 64 MiB array and ~40 ms); it must not
 * call the engine, which may move the heap. Elsewhere it fills a host array that becomes the tensor.
 * Returns the tensor and what `fill` returned.
 */
export function writeTensor<T>(shape: number[], fill: (out: Float32Array) => T): { tensor: tf.Tensor; result: T } {
  const size = shape.reduce((p, d) => p * d, 1);
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmInternals;
    const info = backend.makeOutput(shape, 'float32');
    const tensor = tf.engine().makeTensorFromTensorInfo(info);
    try {
      const offset = backend.dataIdMap.get(info.dataId)!.memoryOffset!;
      const result = fill(new Float32Array(backend.wasm.HEAPU8.buffer, offset, size));
      return { tensor, result };
    } catch (err) {
      tensor.dispose();
      throw err;
    }
  }
  const host = new Float32Array(size);
  const result = fill(host);
  return { tensor: tf.tensor(host, shape, 'float32'), result };
}
