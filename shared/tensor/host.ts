// Host access to float32 tensors without fresh buffers. `dataSync()` returns a newly allocated copy;
// for a 4096×4096 tensor that is 64 MiB whose first touch costs ~200 ms of page faults on the
// project's machines, several times the product that made it. On the wasm backend the tensor already
// lives in the module's heap, so a Float32Array view of that memory reads it for free.
import { tf } from './engine.ts';

interface WasmInternals {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number | null } | undefined };
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
