// The one mapping between the job spec's file form (snake_case) and the library's settings
// (camelCase): a key table per section, used in both directions — resolving a parsed file into a
// JobSpec, and writing a JobSpec back as the wire form (wire.ts). The library never sees a spec.
import { COTO_DEFAULTS, type CotoSchedule } from '../coto/schedule.ts';
import { LORA_DEFAULTS, type LoraConfig } from '../lora/types.ts';
import { TRAINING_DEFAULTS, type TrainingSettings } from '../train/settings.ts';
import type { FileCoto, FileLora, FileMerge, FileTraining } from './schema.ts';
import type { JobMerge } from './types.ts';

const TRAINING_KEYS = {
  steps: 'steps',
  batch_size: 'batchSize',
  seq_len: 'seqLen',
  grad_accum: 'gradAccum',
  lr: 'lr',
  warmup_steps: 'warmupSteps',
  schedule: 'schedule',
  min_lr_ratio: 'minLrRatio',
  weight_decay: 'weightDecay',
  betas: 'betas',
  eps: 'eps',
  max_grad_norm: 'maxGradNorm',
  eval_every: 'evalEvery',
  eval_batches: 'evalBatches',
  checkpoint_every: 'checkpointEvery',
  keep_checkpoints: 'keepCheckpoints',
  log_every: 'logEvery',
  gradient_checkpointing: 'gradientCheckpointing',
  base_weights: 'baseWeights',
  rdrop: 'rdrop',
  eval_generate: 'evalGenerate',
} as const satisfies Record<keyof FileTraining, keyof TrainingSettings>;

const LORA_KEYS = {
  r: 'r',
  alpha: 'loraAlpha',
  dropout: 'loraDropout',
  target_modules: 'targetModules',
  use_rslora: 'useRslora',
  dropout_samples: 'dropoutSamples',
  sparsity: 'sparsity',
  split: 'split',
} as const satisfies Record<keyof FileLora, keyof LoraConfig>;

const COTO_KEYS = {
  p_start: 'pStart',
  p_end: 'pEnd',
  ramp_fraction: 'rampFraction',
  shapley_samples: 'shapleySamples',
} as const satisfies Record<Exclude<keyof FileCoto, 'enabled'>, keyof CotoSchedule>;

const MERGE_KEYS = {
  method: 'method',
  weights: 'weights',
  density: 'density',
  majority_sign: 'majoritySign',
  rank: 'rank',
  seed: 'seed',
  space: 'space',
} as const satisfies Record<keyof FileMerge, keyof JobMerge>;

/** The file-form key of a library field ("warmup_steps" for training's warmupSteps). */
export function fileKeyOf(section: 'training' | 'lora' | 'coto', libraryKey: string): string {
  const table: Record<string, string> =
    section === 'training' ? TRAINING_KEYS : section === 'lora' ? LORA_KEYS : COTO_KEYS;
  return Object.keys(table).find((k) => table[k] === libraryKey) ?? libraryKey;
}

/** How a user writes a setting in a job spec, for messages: specField('training', 'seqLen') → "training.seq_len". */
export function specField(section: 'training' | 'lora' | 'coto', libraryKey: string): string {
  return `${section}.${fileKeyOf(section, libraryKey)}`;
}

function toLibrary(table: Record<string, string>, file: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(file)) if (v !== undefined && k in table) out[table[k]] = v;
  return out;
}

function toFile(table: Record<string, string>, lib: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [fileKey, libKey] of Object.entries(table)) {
    const v = (lib as Record<string, unknown>)[libKey];
    if (v !== undefined) out[fileKey] = v;
  }
  return out;
}

/** Training settings from file-form layers (top level, then task), over the library's defaults. */
export function trainingOf(...layers: Array<Partial<FileTraining> | undefined>): Partial<TrainingSettings> {
  return Object.assign({ ...TRAINING_DEFAULTS }, ...layers.map((l) => toLibrary(TRAINING_KEYS, l ?? {})));
}

export function loraConfigOf(...layers: Array<Partial<FileLora> | undefined>): LoraConfig {
  const merged = Object.assign({ ...LORA_DEFAULTS }, ...layers.map((l) => toLibrary(LORA_KEYS, l ?? {})));
  const out = { ...merged, targetModules: [...merged.targetModules] } as LoraConfig;
  if (out.sparsity) out.sparsity = { ...out.sparsity, criterion: out.sparsity.criterion ?? 'snip' };
  return out;
}

/** The CoTo schedule of a task, or null when CoTo is off (plain LoRA). */
export function cotoScheduleOf(...layers: Array<Partial<FileCoto> | undefined>): CotoSchedule | null {
  const enabled = layers.reduce<boolean>((on, l) => l?.enabled ?? on, true);
  if (!enabled) return null;
  return Object.assign({ ...COTO_DEFAULTS }, ...layers.map((l) => toLibrary(COTO_KEYS, l ?? {}))) as CotoSchedule;
}

export function mergeOptionsOf(merge: FileMerge): JobMerge {
  return toLibrary(MERGE_KEYS, merge) as JobMerge;
}

export const trainingToFile = (t: TrainingSettings) => toFile(TRAINING_KEYS, t) as FileTraining;
export const loraToFile = (l: LoraConfig) => toFile(LORA_KEYS, l) as FileLora;
export const cotoToFile = (c: CotoSchedule | null): Partial<FileCoto> =>
  c ? { enabled: true, ...(toFile(COTO_KEYS, c) as Omit<FileCoto, 'enabled'>) } : { enabled: false };
export const mergeToFile = (m: JobMerge) => toFile(MERGE_KEYS, m) as FileMerge;
