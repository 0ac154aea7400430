// Data-parallel rounds: R replicas of one adapter trained on disjoint data are reconciled into one
// adapter that every replica continues from. Averaging A and B separately is NOT the average of the
// products B_k A_k; the default works in ΔW space and is exact up to the rank truncation.
import { ChorusError } from '../errors.ts';
import type { LoraAdapter, LoraModule } from '../lora/types.ts';
import { catModule } from './delta.ts';
import { moduleFromSvd } from './factorize.ts';
import { energyKept, lowRankSvd } from './kernels.ts';
import { unitScalingConfig } from './merge.ts';
import {
  checkCompatible,
  checkPrecision,
  checkThreads,
  nameHash,
  type ModuleReport,
  type Precision,
} from './options.ts';
import { runModuleJobs, threadCount } from './parallel.ts';
import { deriveSeed } from '../tensor/random.ts';

export type ReconcileMethod = 'mean' | 'cat_svd' | 'cat' | 'factor_mean';

export interface ReconcileOptions {
  /**
   * 'mean' (default) and 'cat_svd' (the same computation: stack the weighted factors, SVD of the small
   * core): Σ w_k ΔW_k re-factorised to `rank`, keeping the replicas' config (r, alpha, rsLoRA).
   * 'cat': the exact weighted mean with rank Σ r_k and scaling 1 (the rank grows: final merges only).
   * 'factor_mean': FedAvg of A and B separately — cheap, biased (cross terms); for comparison.
   */
  method?: ReconcileMethod;
  /** Output rank (default: the replicas' rank). Only for mean/cat_svd. */
  rank?: number;
  /** Relative weights (e.g. samples seen per replica); normalised to sum 1. Default equal. */
  weights?: number[];
  labels?: string[];
  seed?: number;
  /** 'float32' (default, tensor engine) or 'float64' (reference loops); see MergeOptions. */
  precision?: Precision;
  /** Worker threads reconciling modules side by side (default 1: this thread; 'auto' as in MergeOptions). */
  threads?: number | 'auto';
}

/** What one module's reconciliation needs (sent to a merge thread as is). */
export interface ReconcileModuleOptions {
  method: ReconcileMethod;
  rank?: number;
  seed?: number;
  precision: Precision;
}

export interface ReconcileResult {
  adapter: LoraAdapter;
  modules: ModuleReport[];
}

/**
 * Modules whose A is identical in every replica (e.g. a layer CoTo never activated this round, or
 * replicas that only moved B) are averaged exactly as B = Σ w_k B_k with A unchanged. Otherwise the
 * SVD factors are split so that each row of A keeps the replicas' RMS row norm (B takes σ), and
 * directions with σ = 0 get fresh orthogonal A rows with zero B columns: ΔW is unchanged and no
 * direction is left with both factors zero (a saddle that gradient descent cannot leave).
 */
export async function reconcileReplicas(
  replicas: LoraAdapter[],
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const method = options.method ?? 'mean';
  if (!['mean', 'cat_svd', 'cat', 'factor_mean'].includes(method)) {
    throw new ChorusError(`unknown reconcile method "${method}" (expected mean, cat_svd, cat or factor_mean)`);
  }
  if (replicas.length === 0) throw new ChorusError('reconcile needs at least one replica');
  const labels = options.labels ?? replicas.map((_, i) => `replica ${i}`);
  const raw = options.weights ?? replicas.map(() => 1);
  if (raw.length !== replicas.length)
    throw new ChorusError(`weights: ${raw.length} weights for ${replicas.length} replicas`);
  const sum = raw.reduce((s, x) => s + x, 0);
  if (!raw.every((x) => Number.isFinite(x) && x >= 0) || !(sum > 0)) {
    throw new ChorusError(`weights must be non-negative numbers with a positive sum, got ${raw.join(',')}`);
  }
  const w = raw.map((x) => x / sum);
  const names = checkCompatible(replicas, labels);
  const rank = options.rank;
  if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1)) {
    throw new ChorusError(`rank must be a positive integer, got ${rank}`);
  }
  const perModule: ReconcileModuleOptions = {
    method,
    rank,
    seed: options.seed,
    precision: checkPrecision(options.precision),
  };
  const mods = names.map((name) => {
    const list = replicas.map((r) => r.modules.get(name)!);
    const first = list[0];
    list.forEach((x, k) => {
      if (x.rank !== first.rank || x.scaling !== first.scaling) {
        throw new ChorusError(
          `replicas disagree on module ${name}: rank ${first.rank}, scaling ${first.scaling} in ${labels[0]} ` +
            `but rank ${x.rank}, scaling ${x.scaling} in ${labels[k]}`,
        );
      }
    });
    return list;
  });
  const modules = new Map<string, LoraModule>();
  const reports: ModuleReport[] = [];
  await runModuleJobs(
    names.length,
    (i) => ({ kind: 'reconcile', name: names[i], mods: mods[i], weights: w, options: perModule }),
    threadCount(
      checkThreads(options.threads),
      mods.map((list) => list[0]),
    ),
    (i, out) => {
      modules.set(names[i], out.module!);
      reports.push(out.report as ModuleReport);
    },
  );
  const config =
    method === 'cat'
      ? unitScalingConfig(modules, replicas[0].config)
      : { ...replicas[0].config, targetModules: [...replicas[0].config.targetModules] };
  if (method !== 'cat' && options.rank !== undefined && options.rank !== config.r) {
    // Keep the scaling the replicas train with: alpha follows the rank as alpha/r (or /√r) did.
    const s = first(modules).scaling;
    config.r = options.rank;
    config.loraAlpha = config.useRslora ? s * Math.sqrt(options.rank) : s * options.rank;
  }
  return { adapter: { config, modules }, modules: reports };
}

function first(modules: Map<string, LoraModule>): LoraModule {
  return modules.values().next().value as LoraModule;
}

/** One module of a round (what a merge thread runs). */
export function reconcileModule(
  name: string,
  mods: LoraModule[],
  w: number[],
  options: ReconcileModuleOptions,
): { module: LoraModule; report: ModuleReport } {
  const method = options.method;
  const { rank: r, inFeatures: n, outFeatures: m, scaling: s } = mods[0];
  if (method === 'cat') {
    const mod = catModule(
      mods,
      w.map((x) => x * s),
    );
    return { module: mod, report: { name, rank: mod.rank, energyKept: 1 } };
  }
  const sameA = mods.every((x) => x.a === mods[0].a || arraysEqual(x.a, mods[0].a));
  const rank = options.rank ?? r;
  if (method === 'factor_mean' || (sameA && rank === r)) {
    const a = new Float32Array(r * n);
    const b = new Float32Array(m * r);
    const accA = new Float64Array(r * n);
    const accB = new Float64Array(m * r);
    mods.forEach((x, k) => {
      for (let i = 0; i < accA.length; i++) accA[i] += w[k] * x.a[i];
      for (let i = 0; i < accB.length; i++) accB[i] += w[k] * x.b[i];
    });
    if (sameA) a.set(mods[0].a);
    else a.set(accA);
    b.set(accB);
    return {
      module: { a, b, rank: r, inFeatures: n, outFeatures: m, scaling: s },
      report: { name, rank: r, energyKept: 1 },
    };
  }
  const { svd, sigma } = lowRankSvd(
    mods,
    w.map((x) => x * s),
    rank,
    options.precision,
  );
  let rowNorm2 = 0;
  for (const x of mods) for (let i = 0; i < x.a.length; i++) rowNorm2 += x.a[i] * x.a[i];
  const aRowNorm = Math.sqrt(rowNorm2 / (mods.length * r)) || 1;
  const module = moduleFromSvd(svd, rank, {
    split: 'a-norm',
    aRowNorm,
    scaling: s,
    padSeed: deriveSeed(options.seed ?? 0, nameHash(name)),
  });
  return { module, report: { name, rank, energyKept: energyKept(sigma, rank) } };
}

function arraysEqual(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
