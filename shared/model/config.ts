// Llama-family model configuration, typed from a Hugging Face config.json. Public API:
//   interface LlamaConfig                         camelCase view of the fields Chorus uses
//   parseLlamaConfig(json, source?) → LlamaConfig validates; errors name `${source}: field`
//   llamaConfigToJson(cfg) → object               HF config.json (snake_case), extra keys kept
//   makeLlamaConfig(partial) → LlamaConfig        for init-model and tests (fills HF defaults)
// rope_scaling: null, "linear" and "llama3" (Llama 3.1/3.2) are implemented as HF computes them;
// other types ("dynamic", "yarn", …) are rejected, since silently ignoring them would give a model
// that loads but computes something else than HF does.
import { ChorusError } from '../errors.ts';

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Defaults to numAttentionHeads (plain multi-head attention). */
  numKeyValueHeads: number;
  /** Defaults to hiddenSize / numAttentionHeads. */
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  /** HF's initializer_range: std of the normal init of linear and embedding weights. */
  initializerRange: number;
  architectures: string[];
  modelType: string;
  /** Keys of config.json that Chorus does not interpret, written back unchanged. */
  extra: Record<string, unknown>;
}

type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

function parseRopeScaling(v: unknown, source: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  const field = `${source}: rope_scaling`;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ChorusError(`${field} must be an object or null`);
  const o = v as Record<string, unknown>;
  // HF reads "rope_type", falling back to the older "type" key.
  const type = o.rope_type ?? o.type;
  const num = (key: string, fallback?: number) => {
    const x = o[key] ?? fallback;
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) {
      throw new ChorusError(`${field}.${key} must be a positive number, got ${JSON.stringify(x)}`);
    }
    return x;
  };
  if (type === 'default') return null;
  if (type === 'linear') return { type, factor: num('factor') };
  if (type === 'llama3') {
    const r: RopeScaling = {
      type,
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor'),
      highFreqFactor: num('high_freq_factor'),
      originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
    };
    if (r.highFreqFactor <= r.lowFreqFactor)
      throw new ChorusError(`${field}.high_freq_factor must exceed low_freq_factor`);
    return r;
  }
  throw new ChorusError(`${field}: type ${JSON.stringify(type)} is not supported (null, "linear" or "llama3")`);
}

function ropeScalingJson(r: RopeScaling | null): Record<string, unknown> | null {
  if (!r) return null;
  if (r.type === 'linear') return { rope_type: 'linear', factor: r.factor };
  return {
    rope_type: 'llama3',
    factor: r.factor,
    low_freq_factor: r.lowFreqFactor,
    high_freq_factor: r.highFreqFactor,
    original_max_position_embeddings: r.originalMaxPositionEmbeddings,
  };
}

/**
 * RoPE inverse frequencies [headDim/2] as HF's rope-init functions compute them (float64 here;
 * the caller rounds): default 1/θ^(2i/d); "linear" divides by factor; "llama3" divides the
 * low-frequency band by factor and interpolates smoothly between the two wavelength bounds.
 */
export function ropeInverseFrequencies(c: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const r = c.ropeScaling;
  if (!r) return inv;
  if (r.type === 'linear') return inv.map((f) => f / r.factor);
  const lowWavelen = r.originalMaxPositionEmbeddings / r.lowFreqFactor;
  const highWavelen = r.originalMaxPositionEmbeddings / r.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / r.factor;
    const smooth = (r.originalMaxPositionEmbeddings / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
    return (1 - smooth) * (f / r.factor) + smooth * f;
  });
}

const KNOWN_KEYS = new Set([
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'vocab_size',
  'rms_norm_eps',
  'rope_theta',
  'tie_word_embeddings',
  'max_position_embeddings',
  'initializer_range',
  'architectures',
  'model_type',
  'rope_scaling',
  'attention_bias',
  'mlp_bias',
  'hidden_act',
]);

const SUPPORTED_MODEL_TYPES = new Set(['llama']);

function positiveInt(obj: Record<string, unknown>, key: string, source: string, fallback?: number): number {
  const v = obj[key] ?? fallback;
  if (v === undefined || v === null) throw new ChorusError(`${source}: ${key} is required`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ChorusError(`${source}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function positiveNumber(obj: Record<string, unknown>, key: string, source: string, fallback: number): number {
  const v = obj[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ChorusError(`${source}: ${key} must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function parseLlamaConfig(json: unknown, source = 'config.json'): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ChorusError(`${source}: expected a JSON object`);
  }
  const o = json as Record<string, unknown>;
  const modelType = o.model_type ?? 'llama';
  if (typeof modelType !== 'string' || !SUPPORTED_MODEL_TYPES.has(modelType)) {
    throw new ChorusError(
      `${source}: model_type ${JSON.stringify(modelType)} is not supported (expected one of ${[...SUPPORTED_MODEL_TYPES].join(', ')})`,
    );
  }
  const architectures = o.architectures ?? ['LlamaForCausalLM'];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === 'string')) {
    throw new ChorusError(`${source}: architectures must be a list of strings`);
  }
  const ropeScaling = parseRopeScaling(o.rope_scaling, source);
  for (const key of ['attention_bias', 'mlp_bias'] as const) {
    if (o[key] === true)
      throw new ChorusError(`${source}: ${key}=true is not supported (Llama linear layers have no bias)`);
  }
  if (o.hidden_act !== undefined && o.hidden_act !== 'silu') {
    throw new ChorusError(`${source}: hidden_act ${JSON.stringify(o.hidden_act)} is not supported (only "silu")`);
  }

  const hiddenSize = positiveInt(o, 'hidden_size', source);
  const numAttentionHeads = positiveInt(o, 'num_attention_heads', source);
  const numKeyValueHeads = positiveInt(o, 'num_key_value_heads', source, numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new ChorusError(
      `${source}: num_attention_heads (${numAttentionHeads}) must be a multiple of num_key_value_heads (${numKeyValueHeads})`,
    );
  }
  if (o.head_dim === undefined && hiddenSize % numAttentionHeads !== 0) {
    throw new ChorusError(
      `${source}: hidden_size (${hiddenSize}) must be divisible by num_attention_heads (${numAttentionHeads})`,
    );
  }
  const headDim = positiveInt(o, 'head_dim', source, hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) throw new ChorusError(`${source}: head_dim (${headDim}) must be even for rotary embeddings`);
  const tie = o.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') throw new ChorusError(`${source}: tie_word_embeddings must be true or false`);

  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!KNOWN_KEYS.has(k)) extra[k] = v;

  return {
    hiddenSize,
    intermediateSize: positiveInt(o, 'intermediate_size', source),
    numHiddenLayers: positiveInt(o, 'num_hidden_layers', source),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    vocabSize: positiveInt(o, 'vocab_size', source),
    rmsNormEps: positiveNumber(o, 'rms_norm_eps', source, 1e-6),
    ropeTheta: positiveNumber(o, 'rope_theta', source, 10000),
    ropeScaling,
    tieWordEmbeddings: tie,
    maxPositionEmbeddings: positiveInt(o, 'max_position_embeddings', source, 2048),
    initializerRange: positiveNumber(o, 'initializer_range', source, 0.02),
    architectures: architectures as string[],
    modelType,
    extra,
  };
}

export function llamaConfigToJson(cfg: LlamaConfig): Record<string, unknown> {
  return {
    ...cfg.extra,
    architectures: cfg.architectures,
    model_type: cfg.modelType,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numHiddenLayers,
    num_attention_heads: cfg.numAttentionHeads,
    num_key_value_heads: cfg.numKeyValueHeads,
    head_dim: cfg.headDim,
    vocab_size: cfg.vocabSize,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg.ropeScaling),
    tie_word_embeddings: cfg.tieWordEmbeddings,
    max_position_embeddings: cfg.maxPositionEmbeddings,
    initializer_range: cfg.initializerRange,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: 'float32',
  };
}

/** A config from the few numbers a tiny model needs; the rest takes HF Llama defaults. */
export function makeLlamaConfig(p: {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  vocabSize: number;
  numKeyValueHeads?: number;
  intermediateSize?: number;
  headDim?: number;
  tieWordEmbeddings?: boolean;
  rmsNormEps?: number;
  ropeTheta?: number;
  maxPositionEmbeddings?: number;
}): LlamaConfig {
  return parseLlamaConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: p.hiddenSize,
      num_hidden_layers: p.numHiddenLayers,
      num_attention_heads: p.numAttentionHeads,
      num_key_value_heads: p.numKeyValueHeads ?? p.numAttentionHeads,
      intermediate_size: p.intermediateSize ?? defaultIntermediate(p.hiddenSize),
      head_dim: p.headDim,
      vocab_size: p.vocabSize,
      tie_word_embeddings: p.tieWordEmbeddings ?? false,
      rms_norm_eps: p.rmsNormEps ?? 1e-6,
      rope_theta: p.ropeTheta ?? 10000,
      max_position_embeddings: p.maxPositionEmbeddings ?? 2048,
    },
    'model config',
  );
}

/** Llama's MLP width rule: 2/3 · 4h rounded up to a multiple of 256 (or of 8 for tiny models). */
export function defaultIntermediate(hidden: number): number {
  const raw = Math.floor((2 * 4 * hidden) / 3);
  const multiple = hidden >= 512 ? 256 : 8;
  return Math.ceil(raw / multiple) * multiple;
}
