// PHLoRA-style extraction: a LoRA adapter from a fully fine-tuned model. Per target module,
// ΔW = W_tuned − W_base and a truncated SVD to a fixed rank, or to the smallest rank that keeps the
// asked fraction of the energy Σσ² (= ‖ΔW‖²_F). Small matrices get an exact SVD; large ones a
// randomized SVD with power iterations (the rank search doubles the sketch until it has enough).
// Output: lora_alpha = r (scaling 1), √σ on each factor; ranks that differ per module go to
// rank_pattern/alpha_pattern.
import { ChorusError } from '../errors.ts';
import type { LoraAdapter, LoraModule } from '../lora/types.ts';
import { tf } from '../tensor/engine.ts';
import { hostView, writeTensor } from '../tensor/host.ts';
import { nativeBlas } from '../tensor/native-blas.ts';
import { randomizedSvdEngine } from './engine-linalg.ts';
import { energyFraction, moduleFromSvd } from './factorize.ts';
import { randomizedSvd, svdDense, truncateSvd, type Svd, type TruncatedSvdOptions } from './linalg.ts';
import { mat } from './dense.ts';
import { unitScalingConfig } from './merge.ts';
import { checkPrecision, checkThreads, nameHash, type Precision } from './options.ts';
import { runModuleJobs, threadCount } from './parallel.ts';
import { deriveSeed } from '../tensor/random.ts';

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export interface ExtractOptions {
  /** Fixed rank per module (exclusive with energy). */
  rank?: number;
  /** Fraction of Σσ² to keep, in (0, 1] (exclusive with rank). */
  energy?: number;
  /** Module names to extract (last path component, e.g. q_proj, or a dotted suffix). Default: every
   *  2-D weight except embeddings and lm_head. */
  targets?: string[];
  svd?: TruncatedSvdOptions;
  seed?: number;
  baseModelNameOrPath?: string;
  /** 'float32' (default, tensor engine) or 'float64' (reference loops); see MergeOptions. */
  precision?: Precision;
  /** Worker threads extracting modules side by side (default 1: this thread; 'auto' as in MergeOptions). */
  threads?: number | 'auto';
  /** Called after each module, in module order. */
  onModule?: (report: ExtractReport, index: number, total: number) => void;
}

/** What one module's extraction needs (sent to a merge thread as is). */
export type ExtractModuleOptions = Pick<ExtractOptions, 'rank' | 'energy' | 'svd' | 'seed' | 'precision'>;

function moduleOptions(options: ExtractOptions): ExtractModuleOptions {
  const { rank, energy, svd, seed } = options;
  return { rank, energy, svd, seed, precision: checkPrecision(options.precision) };
}

export interface ExtractReport {
  name: string;
  shape: [number, number];
  rank: number;
  energyKept: number;
  /** ‖ΔW‖_F; 0 means the module did not change and was skipped. */
  deltaNorm: number;
  skipped: boolean;
}

export interface ExtractResult {
  adapter: LoraAdapter;
  modules: ExtractReport[];
}

const DEFAULT_EXCLUDED = new Set(['embed_tokens', 'lm_head', 'wte', 'wpe', 'embed_in', 'embed_out']);

/** Module paths (tensor name without ".weight") selected for extraction. */
export function selectModules(tensors: Map<string, { shape: number[] }>, targets?: string[]): string[] {
  const out: string[] = [];
  for (const [name, t] of tensors) {
    if (!name.endsWith('.weight') || t.shape.length !== 2) continue;
    const path = name.slice(0, -'.weight'.length);
    const last = path.slice(path.lastIndexOf('.') + 1);
    const hit = targets
      ? targets.some((x) => (x.includes('.') ? path === x || path.endsWith(`.${x}`) : last === x))
      : !DEFAULT_EXCLUDED.has(last);
    if (hit) out.push(path);
  }
  return out.sort(naturalCompare);
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Tensors read on demand (one module at a time), e.g. from safetensors files. */
export interface TensorSource {
  shapes: Map<string, { shape: number[] }>;
  load(name: string): Promise<Float32Array>;
}

/** Checks the options and returns the selected module paths. */
export function planExtraction(base: Map<string, { shape: number[] }>, options: ExtractOptions): string[] {
  const { rank, energy } = options;
  if ((rank === undefined) === (energy === undefined))
    throw new ChorusError('extract needs exactly one of rank or energy');
  if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1)) {
    throw new ChorusError(`rank must be a positive integer, got ${rank}`);
  }
  if (energy !== undefined && !(energy > 0 && energy <= 1))
    throw new ChorusError(`energy must be in (0, 1], got ${energy}`);
  const paths = selectModules(base, options.targets);
  if (paths.length === 0) {
    throw new ChorusError(
      options.targets
        ? `no 2-D weight of the base model matches target ${options.targets.join(',')}`
        : 'the base model has no 2-D weights to extract',
    );
  }
  for (const t of options.targets ?? []) {
    if (!paths.some((p) => p === t || p.endsWith(`.${t}`)))
      throw new ChorusError(`target ${t} matches no 2-D weight of the base model`);
  }
  return paths;
}

function checkPair(name: string, b: { shape: number[] }, t: { shape: number[] } | undefined): void {
  if (!t) throw new ChorusError(`tensor ${name} is in the base model but not in the tuned model`);
  if (t.shape.length !== 2 || t.shape[0] !== b.shape[0] || t.shape[1] !== b.shape[1]) {
    throw new ChorusError(
      `tensor ${name} has shape [${b.shape.join(', ')}] in the base model but [${t.shape.join(', ')}] in the tuned model`,
    );
  }
}

/** One module: ΔW = tuned − base, truncated SVD; `module` is absent when ΔW = 0. */
export function extractModule(
  path: string,
  shape: number[],
  base: Float32Array,
  tuned: Float32Array,
  options: ExtractModuleOptions,
): { module?: LoraModule; report: ExtractReport } {
  const [m, n] = shape;
  const precision = options.precision ?? 'float32';
  let delta: tf.Tensor2D | Float64Array;
  let total: number;
  if (precision === 'float32') {
    // ΔW is written straight into the engine's memory: no host copy of it, no upload.
    const written = writeTensor([m, n], (out) => differenceF32(tuned, base, out));
    delta = written.tensor as tf.Tensor2D;
    total = written.result;
  } else {
    delta = new Float64Array(m * n);
    total = differenceInto(tuned, base, delta);
  }
  if (total === 0) {
    if (!(delta instanceof Float64Array)) delta.dispose();
    return { report: { name: path, shape: [m, n], rank: 0, energyKept: 1, deltaNorm: 0, skipped: true } };
  }
  const seed = deriveSeed(options.seed ?? 0, nameHash(path));
  const dense = denseOperand(delta, m, n, { seed, ...options.svd });
  try {
    const { svd, r } =
      options.energy !== undefined
        ? rankForEnergy(path, dense, total, options.energy)
        : { svd: topSvd(dense, options.rank!), r: Math.min(options.rank!, m, n) };
    let kept = 0;
    for (let j = 0; j < Math.min(r, svd.k); j++) kept += svd.s[j] * svd.s[j];
    return {
      module: moduleFromSvd(svd, r),
      report: {
        name: path,
        shape: [m, n],
        rank: r,
        energyKept: energyFraction(kept, total),
        deltaNorm: Math.sqrt(total),
        skipped: false,
      },
    };
  } finally {
    dense.dispose();
  }
}

/** A dense ΔW and the two SVDs extraction asks of it, in its precision (float32: on the engine, uploaded once). */
interface DenseOperand {
  rows: number;
  cols: number;
  opts: TruncatedSvdOptions;
  exact(): Svd;
  randomized(rank: number): Svd;
  dispose(): void;
}

function denseOperand(
  delta: tf.Tensor2D | Float64Array,
  rows: number,
  cols: number,
  opts: TruncatedSvdOptions,
): DenseOperand {
  const host = delta instanceof Float64Array;
  return {
    rows,
    cols,
    opts,
    exact: () => svdDense(mat(rows, cols, Float64Array.from(host ? delta : hostView(delta)))),
    randomized: (rank) =>
      host ? randomizedSvd(mat(rows, cols, delta), rank, opts) : randomizedSvdEngine(delta, rank, opts),
    dispose: () => {
      if (!host) delta.dispose();
    },
  };
}

/** float32 out = tuned − base and Σ (tuned − base)²: BLAS (memory speed, both cores) where it loads. */
function differenceF32(tuned: Float32Array, base: Float32Array, out: Float32Array): number {
  const blas = nativeBlas();
  return blas ? blas.difference(tuned, base, out) : differenceInto(tuned, base, out);
}

/** out = tuned − base; returns Σ (tuned − base)² summed in float64 (four partial sums: the adds pipeline). */
function differenceInto(tuned: Float32Array, base: Float32Array, out: Float32Array | Float64Array): number {
  const n = out.length;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const d0 = tuned[i] - base[i];
    const d1 = tuned[i + 1] - base[i + 1];
    const d2 = tuned[i + 2] - base[i + 2];
    const d3 = tuned[i + 3] - base[i + 3];
    out[i] = d0;
    out[i + 1] = d1;
    out[i + 2] = d2;
    out[i + 3] = d3;
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < n; i++) {
    const d = tuned[i] - base[i];
    out[i] = d;
    s0 += d * d;
  }
  return s0 + s1 + (s2 + s3);
}

function finish(modules: Map<string, LoraModule>, reports: ExtractReport[], options: ExtractOptions): ExtractResult {
  if (modules.size === 0)
    throw new ChorusError('the tuned model equals the base model in every selected module: nothing to extract');
  const targets: string[] = [];
  for (const p of modules.keys()) {
    const last = p.slice(p.lastIndexOf('.') + 1);
    if (!targets.includes(last)) targets.push(last);
  }
  const config = unitScalingConfig(modules, {
    targetModules: targets,
    loraDropout: 0,
    baseModelNameOrPath: options.baseModelNameOrPath,
  });
  return { adapter: { config, modules }, modules: reports };
}

/** Extraction from tensors already in memory (they are read, never taken over). */
export function extractAdapter(
  base: Map<string, NamedTensor>,
  tuned: Map<string, NamedTensor>,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const source = (map: Map<string, NamedTensor>): TensorSource => ({
    shapes: map,
    load: async (name) => map.get(name)!.data,
  });
  return extract(source(base), source(tuned), options, false);
}

/**
 * Extraction that loads one module of each model at a time per thread (whole models need not fit).
 * `load` must return a fresh array: it is handed over to the thread that extracts the module.
 */
export function extractAdapterFrom(
  base: TensorSource,
  tuned: TensorSource,
  options: ExtractOptions,
): Promise<ExtractResult> {
  return extract(base, tuned, options, true);
}

async function extract(
  base: TensorSource,
  tuned: TensorSource,
  options: ExtractOptions,
  handOver: boolean,
): Promise<ExtractResult> {
  const paths = planExtraction(base.shapes, options);
  // Every shape is checked before the slow part starts.
  for (const p of paths) checkPair(`${p}.weight`, base.shapes.get(`${p}.weight`)!, tuned.shapes.get(`${p}.weight`));
  const perModule = moduleOptions(options);
  const threads = threadCount(
    checkThreads(options.threads),
    paths.map((p) => {
      const [outFeatures, inFeatures] = base.shapes.get(`${p}.weight`)!.shape;
      return { outFeatures, inFeatures };
    }),
  );
  const modules = new Map<string, LoraModule>();
  const reports: ExtractReport[] = [];
  await runModuleJobs(
    paths.length,
    async (i) => {
      const name = `${paths[i]}.weight`;
      return {
        kind: 'extract',
        path: paths[i],
        shape: base.shapes.get(name)!.shape,
        base: await base.load(name),
        tuned: await tuned.load(name),
        options: perModule,
        handOver,
      };
    },
    threads,
    (i, out) => {
      const report = out.report as ExtractReport;
      if (out.module) modules.set(paths[i], out.module);
      reports.push(report);
      options.onModule?.(report, i, paths.length);
    },
  );
  return finish(modules, reports, options);
}

function isSmall(a: DenseOperand) {
  return Math.min(a.rows, a.cols) <= (a.opts.exactBelow ?? 256);
}

function topSvd(a: DenseOperand, rank: number): Svd {
  const limit = Math.min(a.rows, a.cols);
  if (isSmall(a) || rank + (a.opts.oversample ?? 10) >= limit) return truncateSvd(a.exact(), rank);
  return a.randomized(rank);
}

/** Smallest r with Σ_{j<r} σ_j² ≥ energy · total, growing a randomized sketch when the matrix is large. */
function rankForEnergy(path: string, a: DenseOperand, total: number, energy: number) {
  const limit = Math.min(a.rows, a.cols);
  const goal = energy * total * (1 - 1e-12);
  const pick = (svd: Svd) => {
    let acc = 0;
    for (let j = 0; j < svd.k; j++) {
      acc += svd.s[j] * svd.s[j];
      if (acc >= goal) return j + 1;
    }
    return -1;
  };
  if (!isSmall(a)) {
    let k = 16;
    for (; k + (a.opts.oversample ?? 10) < limit && k <= limit / 2; k *= 2) {
      const svd = a.randomized(k);
      const r = pick(svd);
      if (r > 0) return { svd, r };
    }
    // A full SVD of a large matrix is out of reach in JS, and a LoRA of more than half the
    // dimension saves nothing: say so instead of grinding.
    if (k > 16)
      throw new ChorusError(
        `module ${path} [${a.rows}×${a.cols}] needs rank > ${k / 2} to keep ${energy} of its energy: ` +
          'the delta is not low-rank; use a fixed --rank or a lower --energy',
      );
  }
  const svd = a.exact();
  const r = pick(svd);
  return { svd, r: r > 0 ? r : limit };
}
