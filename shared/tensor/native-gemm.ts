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
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';

interface BlasAddon {
  gemm(
    memory: ArrayBuffer,
    aOffset: number,
    bOffset: number,
    cOffset: number,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    aStride: number,
    bStride: number,
  ): void;
  describe(): { available: boolean; library: string; error: string; config: string; threads: number };
  setThreads(n: number): void;
}

export interface NativeGemmInfo {
  /** Whether the wasm engine's products run on BLAS now. */
  active: boolean;
  /** The BLAS library's file name when active, else ''. */
  library: string;
  /** The BLAS library and its build configuration, or why it is not in use. */
  detail: string;
  threads: number;
}

/** Where `npm install` (scripts/build-native.mjs) puts the addon. */
export function addonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // shared/tensor in the source tree, dist/shared/tensor in the package: the addon sits at the root.
  for (const root of [join(here, '..', '..'), join(here, '..', '..', '..')]) {
    const candidate = join(root, 'native', 'blas', 'build', 'Release', 'chorus_blas.node');
    if (existsSync(candidate)) return candidate;
  }
  return join(here, '..', '..', 'native', 'blas', 'build', 'Release', 'chorus_blas.node');
}

let addon: BlasAddon | null = null;
let state: NativeGemmInfo = { active: false, library: '', detail: 'not installed yet', threads: 0 };

function loadAddon(): BlasAddon | string {
  const path = addonPath();
  if (!existsSync(path)) return `addon not built (${path}; run npm run build:native)`;
  try {
    const loaded = createRequire(import.meta.url)(path) as BlasAddon;
    const info = loaded.describe();
    if (!info.available) return `no BLAS library loads (${info.error || 'none found'})`;
    return loaded;
  } catch (err) {
    return `addon does not load: ${(err as Error).message.split('\n')[0]}`;
  }
}

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
  const switchValue = process.env.CHORUS_NATIVE_GEMM;
  if (switchValue === '0' || switchValue === 'off') {
    state = { active: false, library: '', detail: 'off (CHORUS_NATIVE_GEMM=0)', threads: 0 };
    return state;
  }
  const loaded = loadAddon();
  if (typeof loaded === 'string') {
    state = { active: false, library: '', detail: loaded, threads: 0 };
    return state;
  }
  addon = loaded;
  const wanted = process.env.CHORUS_BLAS_THREADS;
  if (wanted) {
    const threads = Number(wanted);
    if (Number.isInteger(threads) && threads > 0) addon.setThreads(threads);
    else process.stderr.write(`chorus: CHORUS_BLAS_THREADS must be a positive integer, got '${wanted}'; ignored\n`);
  }
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock) {
    state = { active: false, library: '', detail: 'the wasm backend has no BatchMatMul kernel to replace', threads: 0 };
    return state;
  }
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...stock, setupFunc: undefined, kernelFunc: blasBatchMatMul(stock.kernelFunc, addon) });
  const info = addon.describe();
  state = {
    active: true,
    library: info.library,
    detail: `${info.library}${info.config ? ` (${info.config.trim()})` : ''}`,
    threads: info.threads,
  };
  return state;
}

export function nativeGemmInfo(): NativeGemmInfo {
  return state;
}
