// Merge options, their checks, and the checks that a set of adapters can be merged at all.
// Every error is a ChorusError naming the option or the module (and the adapters involved).
import { ChorusError } from '../errors.ts';
import type { LoraAdapter, LoraModule } from '../lora/types.ts';
import type { TruncatedSvdOptions } from './linalg.ts';
import type { MajoritySign } from './sparsify.ts';

export const MERGE_METHODS = [
  'linear',
  'task_arithmetic',
  'cat',
  'svd',
  'ties',
  'dare_linear',
  'dare_ties',
  'magnitude_prune',
  'orthogonal_dropout',
] as const;
export type MergeMethod = (typeof MERGE_METHODS)[number];

export type Precision = 'float32' | 'float64';
export const PRECISIONS: readonly Precision[] = ['float32', 'float64'];

export const DENSITY_METHODS: ReadonlySet<MergeMethod> = new Set([
  'ties',
  'dare_linear',
  'dare_ties',
  'magnitude_prune',
]);

export interface MergeOptions {
  method: MergeMethod;
  /** One weight per adapter (default all 1). May be negative. */
  weights?: number[];
  /** Fraction of entries kept, in (0, 1]; required by ties, dare_*, magnitude_prune. */
  density?: number;
  /** Sign election for ties/dare_ties (default 'total'). */
  majoritySign?: MajoritySign;
  /** DARE seed (default 0). Same seed, same inputs → same adapter. */
  seed?: number;
  /** Output rank, or 'full' for an exact result. Default: Σ ranks for cat/linear/task_arithmetic,
   *  the largest input rank otherwise. */
  rank?: number | 'full';
  /** 'delta' (default): act on ΔW_k = s_k B_k A_k; 'factors': PEFT's add_weighted_adapter. */
  space?: 'delta' | 'factors';
  /** Names of the adapters for error messages (e.g. their directories). */
  labels?: string[];
  /** Controls for the dense truncated SVD of entry-wise methods. */
  svd?: TruncatedSvdOptions;
  /** 'float32' (default): heavy products on the tensor engine; 'float64': plain float64 loops (reference). */
  precision?: Precision;
  /** Worker threads merging modules side by side, each with its own engine (default 1: this thread);
   *  'auto': one per core when the modules are big enough to repay starting threads. */
  threads?: number | 'auto';
  /** Called after each module, in module order (progress, energy report). */
  onModule?: (report: ModuleReport, index: number, total: number) => void;
}

export interface ModuleReport {
  name: string;
  rank: number;
  /** ‖kept part of the merged ΔW‖²_F / ‖merged ΔW‖²_F (1 when the output is exact). */
  energyKept: number;
}

export interface MergeResult {
  adapter: LoraAdapter;
  modules: ModuleReport[];
}

export interface ResolvedOptions {
  method: MergeMethod;
  weights: number[];
  density: number;
  majoritySign: MajoritySign;
  seed: number;
  rank: number | 'full' | undefined;
  space: 'delta' | 'factors';
  labels: string[];
  svd: TruncatedSvdOptions;
  precision: Precision;
}

export function resolveOptions(count: number, opts: MergeOptions): ResolvedOptions {
  if (!MERGE_METHODS.includes(opts.method)) {
    throw new ChorusError(
      `unknown merge method "${String(opts.method)}" (expected one of ${MERGE_METHODS.join(', ')})`,
    );
  }
  if (count < 1) throw new ChorusError('merge needs at least one adapter');
  const labels = opts.labels ?? Array.from({ length: count }, (_, i) => `adapter ${i + 1}`);
  if (labels.length !== count) throw new ChorusError(`${labels.length} labels for ${count} adapters`);
  const weights = opts.weights ?? new Array<number>(count).fill(1);
  if (weights.length !== count) {
    throw new ChorusError(`weights: ${weights.length} weights given for ${count} adapters`);
  }
  weights.forEach((w, i) => {
    if (!Number.isFinite(w)) throw new ChorusError(`weights[${i}] (${labels[i]}) is not a finite number: ${w}`);
  });
  let density = 1;
  if (DENSITY_METHODS.has(opts.method)) {
    if (opts.density === undefined) throw new ChorusError(`density is required for method ${opts.method}`);
    if (!(opts.density > 0 && opts.density <= 1)) {
      throw new ChorusError(`density must be in (0, 1], got ${opts.density}`);
    }
    density = opts.density;
  } else if (opts.density !== undefined) {
    throw new ChorusError(`density does not apply to method ${opts.method} (only ${[...DENSITY_METHODS].join(', ')})`);
  }
  const majoritySign = opts.majoritySign ?? 'total';
  if (majoritySign !== 'total' && majoritySign !== 'frequency') {
    throw new ChorusError(`majority sign must be "total" or "frequency", got "${String(majoritySign)}"`);
  }
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new ChorusError(`seed must be an integer, got ${seed}`);
  const rank = opts.rank;
  if (rank !== undefined && rank !== 'full' && !(Number.isInteger(rank) && rank >= 1)) {
    throw new ChorusError(`rank must be a positive integer or "full", got ${String(rank)}`);
  }
  const space = opts.space ?? 'delta';
  if (space !== 'delta' && space !== 'factors') {
    throw new ChorusError(`space must be "delta" or "factors", got "${String(space)}"`);
  }
  if (opts.method === 'orthogonal_dropout' && space === 'factors') {
    throw new ChorusError(
      'space "factors" is not available for method orthogonal_dropout (it masks ΔW\'s output units)',
    );
  }
  const precision = checkPrecision(opts.precision);
  checkThreads(opts.threads);
  const svd = opts.svd ?? {};
  return { method: opts.method, weights, density, majoritySign, seed, rank, space, labels, svd, precision };
}

export function checkPrecision(precision: Precision | undefined): Precision {
  if (precision === undefined) return 'float32';
  if (!PRECISIONS.includes(precision)) {
    throw new ChorusError(`precision must be ${PRECISIONS.join(' or ')}, got "${String(precision)}"`);
  }
  return precision;
}

export function checkThreads(threads: number | 'auto' | undefined): number | 'auto' {
  if (threads === undefined) return 1;
  if (threads !== 'auto' && !(Number.isInteger(threads) && threads >= 1)) {
    throw new ChorusError(`threads must be a positive integer, got ${String(threads)}`);
  }
  return threads;
}

const shape = (m: LoraModule) => `[${m.outFeatures}, ${m.inFeatures}]`;

/** Same module set and ΔW shapes in every adapter; ranks and alphas may differ. */
export function checkCompatible(adapters: LoraAdapter[], labels: string[]): string[] {
  const names = [...adapters[0].modules.keys()];
  if (names.length === 0) throw new ChorusError(`${labels[0]} has no LoRA modules`);
  for (let k = 0; k < adapters.length; k++) {
    for (const [name, mod] of adapters[k].modules) checkModule(name, mod, labels[k]);
  }
  for (let k = 1; k < adapters.length; k++) {
    const mods = adapters[k].modules;
    for (const name of names) {
      const other = mods.get(name);
      if (!other) throw new ChorusError(`module ${name} is in ${labels[0]} but not in ${labels[k]}`);
      const first = adapters[0].modules.get(name)!;
      if (other.outFeatures !== first.outFeatures || other.inFeatures !== first.inFeatures) {
        throw new ChorusError(
          `module ${name} has shape ${shape(first)} in ${labels[0]} but ${shape(other)} in ${labels[k]}`,
        );
      }
    }
    for (const name of mods.keys()) {
      if (!adapters[0].modules.has(name))
        throw new ChorusError(`module ${name} is in ${labels[k]} but not in ${labels[0]}`);
    }
  }
  return names;
}

function checkModule(name: string, m: LoraModule, label: string) {
  if (m.a.length !== m.rank * m.inFeatures) {
    throw new ChorusError(
      `${label}: module ${name} lora_A has ${m.a.length} values, expected [${m.rank}, ${m.inFeatures}]`,
    );
  }
  if (m.b.length !== m.outFeatures * m.rank) {
    throw new ChorusError(
      `${label}: module ${name} lora_B has ${m.b.length} values, expected [${m.outFeatures}, ${m.rank}]`,
    );
  }
  if (!Number.isFinite(m.scaling))
    throw new ChorusError(`${label}: module ${name} has a non-finite scaling ${m.scaling}`);
}

/** FNV-1a of a module name: DARE masks depend on the module, not on iteration order. */
export function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
