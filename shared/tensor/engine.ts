// Tensor engine selection. Public API:
//   initEngine(preferred?, { quiet? }) → Promise<{ backend }>   picks and activates a tfjs backend
//   tf                                                          the tfjs namespace everyone uses
//   activeBackend()                                             the backend initEngine chose (or null)
//   availableBackends()                                         every backend that loads here (bench)
// Order: the explicit argument, else env CHORUS_BACKEND, else the best that loads:
// @tensorflow/tfjs-node-gpu → @tensorflow/tfjs-node → wasm → cpu. The native packages are not
// dependencies (they download libtensorflow at install time, which fails offline), so they are
// imported dynamically and any failure just moves on to the next candidate. An explicit choice that
// fails is a ChorusError saying why.
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ChorusError, errorMessage } from '../errors.ts';
import { installNativeGemm, nativeGemmInfo } from './native-gemm.ts';

export { tf };

export type BackendChoice = 'tensorflow' | 'wasm' | 'cpu';
const BACKEND_CHOICES: readonly BackendChoice[] = ['tensorflow', 'wasm', 'cpu'];

let chosen: string | null = null;
let announced = false;

export function activeBackend(): string | null {
  return chosen;
}

/** Loads the native TensorFlow binding; GPU build first. Throws with every reason on failure. */
async function loadTensorflow(): Promise<void> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // A variable specifier keeps TypeScript from requiring the (absent) type declarations.
      await import(pkg as string);
      if (await tf.setBackend('tensorflow')) return;
      reasons.push(`${pkg}: backend 'tensorflow' did not initialise`);
    } catch (err) {
      reasons.push(`${pkg}: ${firstLine(errorMessage(err))}`);
    }
  }
  throw new Error(reasons.join('; '));
}

let wasmRegistered = false;
async function loadWasm(): Promise<void> {
  if (!wasmRegistered) {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // In Node the emscripten loader reads the .wasm binaries from disk; point it at the package's
    // dist folder explicitly, since the default (relative to the script URL) is wrong under tsx.
    const require = createRequire(import.meta.url);
    const distDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    const prefix = join(distDir, 'dist') + '/';
    wasm.setWasmPaths(prefix);
    wasmRegistered = true;
  }
  // The emscripten loader installs process-wide handlers that rethrow every uncaught error and
  // rejection (printing its whole minified source); drop them so errors surface normally.
  type Listener = (...args: unknown[]) => void;
  const events = ['uncaughtException', 'unhandledRejection'];
  const listeners = (e: string) => process.listeners(e as 'uncaughtException') as Listener[];
  const before = events.map((e) => new Set(listeners(e)));
  try {
    if (!(await tf.setBackend('wasm'))) throw new Error("backend 'wasm' did not initialise");
    installNativeGemm();
  } finally {
    events.forEach((e, i) => {
      for (const l of listeners(e)) if (!before[i].has(l)) process.removeListener(e, l);
    });
  }
}

async function loadCpu(): Promise<void> {
  // PROD silences tfjs's console advert for tfjs-node, printed on first use of the cpu backend.
  tf.env().set('PROD', true);
  if (!(await tf.setBackend('cpu'))) throw new Error("backend 'cpu' did not initialise");
}

async function activate(choice: BackendChoice): Promise<void> {
  if (choice === 'tensorflow') return loadTensorflow();
  if (choice === 'wasm') return loadWasm();
  return loadCpu();
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

function parseChoice(value: string, source: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new ChorusError(`${source}: unknown backend '${value}' (expected one of ${BACKEND_CHOICES.join(', ')})`);
}

/**
 * Activates a backend and returns its name. Calling it again with the same (or no) preference is
 * cheap; with a different explicit preference it switches backend.
 */
export async function initEngine(
  preferred?: BackendChoice | string,
  opts: { quiet?: boolean } = {},
): Promise<{ backend: string }> {
  let explicit: BackendChoice | undefined;
  if (preferred) explicit = parseChoice(preferred, '--backend');
  else if (process.env.CHORUS_BACKEND) explicit = parseChoice(process.env.CHORUS_BACKEND, 'CHORUS_BACKEND');

  if (chosen && (!explicit || explicit === chosen)) return { backend: chosen };

  if (explicit) {
    try {
      await activate(explicit);
    } catch (err) {
      throw new ChorusError(`backend '${explicit}' is not available: ${errorMessage(err)}`);
    }
    chosen = explicit;
  } else {
    const failures: string[] = [];
    for (const candidate of BACKEND_CHOICES) {
      try {
        await activate(candidate);
        chosen = candidate;
        break;
      } catch (err) {
        failures.push(`${candidate}: ${firstLine(errorMessage(err))}`);
      }
    }
    if (!chosen) throw new ChorusError(`no tensor backend loads: ${failures.join('; ')}`);
  }
  await tf.ready();
  const quiet = opts.quiet ?? process.env.CHORUS_QUIET_BACKEND === '1';
  if (!quiet && !announced) {
    process.stderr.write(`chorus: backend ${describeBackend()}\n`);
    announced = true;
  }
  return { backend: chosen };
}

/**
 * Whether a product with transpose flags or batch dimensions costs what the plain 2-D product costs.
 * False only on wasm without native GEMM, whose BatchMatMul is fast (XNNPACK) for one untransposed
 * 2-D product and a slow loop nest otherwise (tensor/ops.ts works around it there).
 */
export function productsTakeFlags(): boolean {
  return tf.getBackend() !== 'wasm' || nativeGemmInfo().active;
}

/** The active backend in words, naming the BLAS that computes the wasm engine's products. */
export function describeBackend(): string {
  if (chosen !== 'wasm') return chosen ?? 'none';
  const gemm = nativeGemmInfo();
  if (!gemm.active) return 'wasm';
  return `wasm (products on ${gemm.library}${gemm.kernel ? `, ${gemm.kernel} kernel` : ''}, ${gemm.threads} threads)`;
}

/** Every backend that activates here, in preference order (leaves the last one active). */
export async function availableBackends(): Promise<BackendChoice[]> {
  const ok: BackendChoice[] = [];
  for (const candidate of BACKEND_CHOICES) {
    try {
      await activate(candidate);
      ok.push(candidate);
    } catch {
      // not available on this machine
    }
  }
  if (chosen) await activate(chosen as BackendChoice);
  return ok;
}
