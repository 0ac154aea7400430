// The native addon (native/blas) that hands Chorus's heavy linear algebra to the machine's BLAS and
// LAPACK (OpenBLAS from the distribution): float32 GEMM for the tensor engine (native-gemm.ts) and
// the float64 Householder QR of the merge library (merge/linalg.ts). The addon is optional: when it
// was not built, or no BLAS library loads, or CHORUS_NATIVE_GEMM=0, both keep their own code
// (XNNPACK's products, the QR in JavaScript), whose bits are the same on every machine. It also
// carries the BLAS calls of the merge library's host-side float64 algebra (dgemm) and the extraction's
// ΔW = tuned − base (copy, axpy, dsdot).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export interface BlasAddon {
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
  /** In place: the first min(len, count) vectors of `columns` become Q's columns; R goes to `r`. Returns k. */
  qr(columns: Float64Array, len: number, count: number, r: Float64Array | null): number;
  /** out = tuned − base in float32; returns Σ out² summed in float64. */
  difference(tuned: Float32Array, base: Float32Array, out: Float32Array): number;
  /** Row-major float64 c (m×n) = op(a)·op(b). */
  dgemm(
    a: Float64Array,
    b: Float64Array,
    c: Float64Array,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
  ): void;
  describe(): {
    available: boolean;
    lapack: boolean;
    library: string;
    error: string;
    config: string;
    /** OpenBLAS's kernel for this CPU (or the one OPENBLAS_CORETYPE names); '' for another BLAS. */
    kernel: string;
    threads: number;
  };
  setThreads(n: number): void;
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

/** Whether CHORUS_NATIVE_GEMM turns every native path off. */
function nativeSwitchedOff(): boolean {
  const value = process.env.CHORUS_NATIVE_GEMM;
  return value === '0' || value === 'off';
}

let loaded: BlasAddon | string | undefined;
let lapackQr: BlasAddon['qr'] | null = null;

function load(): BlasAddon | string {
  if (nativeSwitchedOff()) return 'off (CHORUS_NATIVE_GEMM=0)';
  const path = addonPath();
  if (!existsSync(path)) return `addon not built (${path}; run npm run build:native)`;
  let addon: BlasAddon;
  try {
    addon = createRequire(import.meta.url)(path) as BlasAddon;
  } catch (err) {
    return `addon does not load: ${(err as Error).message.split('\n')[0]}`;
  }
  const info = addon.describe();
  if (!info.available) return `no BLAS library loads (${info.error || 'none found'})`;
  const wanted = process.env.CHORUS_BLAS_THREADS;
  if (wanted) {
    const threads = Number(wanted);
    if (Number.isInteger(threads) && threads > 0) addon.setThreads(threads);
    else process.stderr.write(`chorus: CHORUS_BLAS_THREADS must be a positive integer, got '${wanted}'; ignored\n`);
  }
  if (info.lapack) lapackQr = addon.qr;
  return addon;
}

/** The loaded addon (once per thread), or why there is none. */
export function blasAddon(): BlasAddon | string {
  loaded ??= load();
  return loaded;
}

/** The addon when it loads with a BLAS library, else null. */
export function nativeBlas(): BlasAddon | null {
  const addon = blasAddon();
  return typeof addon === 'string' ? null : addon;
}

/** LAPACK's QR when the addon and a BLAS library with LP64 LAPACK load, else null. */
export function nativeQr(): BlasAddon['qr'] | null {
  blasAddon();
  return lapackQr;
}
