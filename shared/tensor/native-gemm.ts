// Matrix products of the wasm engine computed by the machine's BLAS (OpenBLAS), in place in the
// engine's memory. tfjs-wasm runs XNNPACK on one thread under Node (its threaded build needs
// `blob:` workers, which Node refuses), and its BatchMatMul is fast only for an untransposed 2-D
// product; OpenBLAS uses every core, takes transpose flags and batches for free, and is what
// NumPy and PyTorch run on the same machine. The addon (native/blas) is optional: when it was not
// built, or no BLAS library is installed, or CHORUS_NATIVE_GEMM=0, the engine keeps XNNPACK.
//
// Every product of the wasm backend goes through here (tf.matMul, its gradients, einsum's
// products), so turning it on changes float32 rounding (BLAS sums in another order) but not the
// mathematics; runs that must agree bit for bit must agree on this switch too (`nativeGemmInfo`).
import * as tf from '@tensorflow/tfjs';
import { blasAddon, type BlasAddon } from './native-blas.ts';

export interface NativeGemmInfo {
  /** Whether the wasm engine's products run on BLAS now. */
  active: boolean;
  /** The BLAS library's file name when active, else ''. */
  library: string;
  /** The BLAS library and its build configuration, or why it is not in use. */
  detail: string;
  /** OpenBLAS's kernel (e.g. Haswell, SkylakeX) when active; '' otherwise or for another BLAS. */
  kernel: string;
  threads: number;
}

const inactive = (detail: string): NativeGemmInfo => ({ active: false, library: '', detail, kernel: '', threads: 0 });

let state = inactive('not installed yet');

// Below this many multiply-adds the call into BLAS costs more than XNNPACK's product.
const MIN_WORK = 32 * 32 * 32;

interface WasmBackendInternals {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(id: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

type KernelFunc = NonNullable<ReturnType<typeof tf.getKernel>>['kernelFunc'];

function blasBatchMatMul(original: KernelFunc, blas: BlasAddon): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const batchA = a.shape.slice(0, -2).reduce((p, d) => p * d, 1);
    const batchB = b.shape.slice(0, -2).reduce((p, d) => p * d, 1);
    // General broadcasting of batch dimensions, a shape error, or a product too small to gain:
    // the stock kernel (which also words the shape error).
    const simpleBatch = batchA === batchB || batchA === 1 || batchB === 1;
    if (k !== kb || !simpleBatch || m * n * k < MIN_WORK) return original(args);
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
    const batch = Math.max(batchA, batchB);
    const backend = args.backend as unknown as WasmBackendInternals;
    const out = backend.makeOutput([...outer, m, n], 'float32');
    // Read the memory after allocating the output: growing the heap replaces its ArrayBuffer.
    const memory = backend.wasm.HEAPU8.buffer as ArrayBuffer;
    blas.gemm(
      memory,
      backend.dataIdMap.get(a.dataId).memoryOffset,
      backend.dataIdMap.get(b.dataId).memoryOffset,
      backend.dataIdMap.get(out.dataId).memoryOffset,
      batch,
      m,
      n,
      k,
      transposeA,
      transposeB,
      batchA === 1 ? 0 : m * k,
      batchB === 1 ? 0 : k * n,
    );
    return out;
  };
}

/**
 * Routes the wasm backend's BatchMatMul to BLAS when the addon and a BLAS library load and
 * CHORUS_NATIVE_GEMM is not 0. Call once the wasm backend is active; idempotent.
 */
export function installNativeGemm(): NativeGemmInfo {
  if (state.active) return state;
  const addon = blasAddon();
  if (typeof addon === 'string') {
    state = inactive(addon);
    return state;
  }
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock) {
    state = inactive('the wasm backend has no BatchMatMul kernel to replace');
    return state;
  }
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...stock, setupFunc: undefined, kernelFunc: blasBatchMatMul(stock.kernelFunc, addon) });
  const info = addon.describe();
  state = {
    active: true,
    library: info.library,
    detail: `${info.library}${info.config ? ` (${info.config.trim()})` : ''}`,
    kernel: info.kernel,
    threads: info.threads,
  };
  return state;
}

export function nativeGemmInfo(): NativeGemmInfo {
  return state;
}
