// The in-memory LoRA adapter: the one representation that the trainer, the PEFT reader/writer,
// the merge library and the cluster all exchange. Plain typed arrays, row-major, so it crosses
// threads and processes without a tensor engine.

/** PEFT-compatible adapter settings (snake_case on disk, camelCase here). */
export interface LoraConfig {
  /** Default rank; a module may differ (PEFT's rank_pattern). */
  r: number;
  /** Default alpha; a module may differ (PEFT's alpha_pattern). */
  loraAlpha: number;
  /** Module names, e.g. ["q_proj", "v_proj"]. */
  targetModules: string[];
  /**
   * Set when PEFT's target_modules was a regex string (matched against the full module path);
   * targetModules then lists the module names it matched. The PEFT writer writes it back verbatim.
   */
  targetModulesRegex?: string;
  loraDropout: number;
  useRslora: boolean;
  baseModelNameOrPath?: string;
  /** Per-module rank overrides keyed by module path suffix, as PEFT's rank_pattern. */
  rankPattern?: Record<string, number>;
  /** Per-module alpha overrides keyed by module path suffix, as PEFT's alpha_pattern. */
  alphaPattern?: Record<string, number>;
  // Training-only methods (docs/METHODS.md). They change how the factors are trained, never what
  // a file means: the PEFT writer leaves them out and the saved adapter is an ordinary LoRA.
  /** Multi-sample dropout: K dropout masks on the LoRA input per step, the K losses averaged (default 1). */
  dropoutSamples?: number;
  /** SparseAdapter: entries pruned at initialisation, kept at zero through training. */
  sparsity?: LoraSparsity;
  /** MoSA-style split: the rank in `groups` blocks, `active` of them trained per step. */
  split?: LoraSplit;
}

export const SPARSITY_CRITERIA = ['snip', 'magnitude', 'random'] as const;
type SparsityCriterion = (typeof SPARSITY_CRITERIA)[number];

export interface LoraSparsity {
  /** Fraction of each factor's entries pruned, in [0, 1). */
  ratio: number;
  criterion: SparsityCriterion;
  /** Training batches SNIP's saliency is summed over (default 2). */
  batches?: number;
}

export interface LoraSplit {
  groups: number;
  active: number;
}

/** One adapted linear layer: y = W x + scaling · B (A x). */
export interface LoraModule {
  /** [rank, inFeatures], row-major (PEFT's lora_A.weight). */
  a: Float32Array;
  /** [outFeatures, rank], row-major (PEFT's lora_B.weight). */
  b: Float32Array;
  rank: number;
  inFeatures: number;
  outFeatures: number;
  /** alpha / rank, or alpha / sqrt(rank) with rsLoRA. */
  scaling: number;
}

export interface LoraAdapter {
  config: LoraConfig;
  /** Keyed by module path without prefix or suffix, e.g. "model.layers.0.self_attn.q_proj". */
  modules: Map<string, LoraModule>;
}

/** What an adapter gets for settings a job does not give (PEFT's defaults, but r 8 and alpha 16). */
export const LORA_DEFAULTS: Pick<LoraConfig, 'r' | 'loraAlpha' | 'loraDropout' | 'targetModules' | 'useRslora'> = {
  r: 8,
  loraAlpha: 16,
  loraDropout: 0,
  targetModules: ['q_proj', 'v_proj'],
  useRslora: false,
};

export function loraScaling(alpha: number, rank: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

/** Layer index of a module path such as "model.layers.7.mlp.up_proj", or -1. */
export function layerOfModule(path: string): number {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(path);
  return m ? Number(m[1]) : -1;
}
