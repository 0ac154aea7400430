// The job spec's file form (YAML or JSON, snake_case keys) as a zod schema. Every field is optional
// where a default exists: the defaults live with the library concepts (shared/lora, shared/coto,
// shared/train, shared/merge) and are applied when the spec is resolved (to-library.ts).
import { z } from 'zod';
import { MODULE_NAMES } from '../model/llama.ts';
import { MERGE_METHODS } from '../merge/options.ts';
import { BASE_WEIGHTS_MODES, LR_SCHEDULES } from '../train/settings.ts';
import * as L from './limits.ts';
import { SPARSITY_CRITERIA } from '../lora/types.ts';

// z.int() also refuses integers past 2^53; `max` is the field's documented bound (limits.ts).
const int = (min: number, max: number) =>
  z.int({ error: 'must be an integer' }).gte(min, `must be >= ${min}`).lte(max, `must be <= ${max}`);
const str = (max: number) => z.string({ error: 'must be a string' }).max(max, `must be at most ${max} characters`);
const num = () => z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be finite');
const positive = () => num().gt(0, 'must be > 0');
const fraction = (lowInclusive: boolean) =>
  (lowInclusive ? num().gte(0, 'must be >= 0') : num().gt(0, 'must be > 0')).lte(1, 'must be <= 1');
const path = () =>
  z
    .string({ error: 'must be a path (string)' })
    .min(1, 'must not be empty')
    .max(L.MAX_PATH_CHARS, `must be at most ${L.MAX_PATH_CHARS} characters`);
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });

const loraFields = z.strictObject({
  r: int(1, L.MAX_LORA_RANK),
  alpha: positive().lte(L.MAX_SCALE, `must be <= ${L.MAX_SCALE}`),
  dropout: num().gte(0, 'must be >= 0').lt(1, 'must be < 1'),
  target_modules: z
    .array(oneOf(MODULE_NAMES))
    .min(1, 'must name at least one module')
    .max(MODULE_NAMES.length, `must list each module at most once (${MODULE_NAMES.length} at most)`),
  use_rslora: z.boolean({ error: 'must be true or false' }),
  // Training-only methods (docs/METHODS.md); cross-field rules are checked in parse.ts.
  dropout_samples: int(1, 64),
  sparsity: z.strictObject({
    ratio: num().gte(0, 'must be >= 0').lt(1, 'must be < 1'),
    criterion: oneOf(SPARSITY_CRITERIA).optional(),
    batches: int(1, 64).optional(),
  }),
  split: z.strictObject({ groups: int(2, L.MAX_LORA_RANK), active: int(1, L.MAX_LORA_RANK) }),
});

const cotoFields = z.strictObject({
  enabled: z.boolean({ error: 'must be true or false' }),
  p_start: fraction(false),
  p_end: fraction(false),
  ramp_fraction: fraction(false),
  shapley_samples: int(0, L.MAX_SHAPLEY_SAMPLES),
});

const trainingFields = z.strictObject({
  steps: int(1, L.MAX_STEPS),
  batch_size: int(1, L.MAX_BATCH_SIZE),
  seq_len: int(2, L.MAX_SEQ_LEN),
  grad_accum: int(1, L.MAX_GRAD_ACCUM),
  lr: positive().lte(L.MAX_LR, `must be <= ${L.MAX_LR}`),
  warmup_steps: int(0, L.MAX_STEPS),
  schedule: oneOf(LR_SCHEDULES),
  min_lr_ratio: fraction(true),
  weight_decay: num().gte(0, 'must be >= 0').lte(L.MAX_WEIGHT_DECAY, `must be <= ${L.MAX_WEIGHT_DECAY}`),
  betas: z.tuple(
    [num().gte(0, 'must be >= 0').lt(1, 'must be < 1'), num().gte(0, 'must be >= 0').lt(1, 'must be < 1')],
    {
      error: 'must be a list of two numbers [beta1, beta2]',
    },
  ),
  eps: positive().lte(1, 'must be <= 1'),
  max_grad_norm: num().gte(0, 'must be >= 0').lte(L.MAX_SCALE, `must be <= ${L.MAX_SCALE}`),
  eval_every: int(0, L.MAX_STEPS),
  eval_batches: int(1, L.MAX_EVAL_BATCHES),
  checkpoint_every: int(0, L.MAX_STEPS),
  keep_checkpoints: int(0, L.MAX_KEEP_CHECKPOINTS),
  log_every: int(1, L.MAX_STEPS),
  gradient_checkpointing: z.union([z.boolean(), z.literal('auto')], { error: 'must be true, false or auto' }),
  base_weights: oneOf(BASE_WEIGHTS_MODES),
  rdrop: z.strictObject({ alpha: num().gte(0, 'must be >= 0').lte(L.MAX_SCALE, `must be <= ${L.MAX_SCALE}`) }),
  eval_generate: z.strictObject({
    stop: z
      .array(str(L.MAX_STOP_CHARS).min(1, 'must not be empty'))
      .max(L.MAX_STOP_STRINGS, `must have at most ${L.MAX_STOP_STRINGS} entries`)
      .optional(),
    tokens: int(1, L.MAX_NEW_TOKENS).optional(),
  }),
});

const dataFields = z.strictObject({ train: path(), eval: path().optional() });

const overrides = {
  seed: int(0, Number.MAX_SAFE_INTEGER).optional(),
  lora: loraFields.partial().optional(),
  coto: cotoFields.partial().optional(),
  training: trainingFields.partial().optional(),
};

const taskFields = z.strictObject({
  name: str(L.MAX_TASK_NAME_CHARS).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", "." or "-"'),
  data: dataFields,
  replicas: int(1, L.MAX_REPLICAS).optional(),
  ...overrides,
});

const syncFields = z.discriminatedUnion(
  'mode',
  [
    z.strictObject({ mode: z.literal('gradients') }),
    z.strictObject({
      mode: z.literal('weights'),
      every: int(1, L.MAX_STEPS),
      method: z.enum(['mean', 'cat_svd'], { error: 'must be mean or cat_svd' }).optional(),
    }),
  ],
  { error: 'must be {mode: gradients} or {mode: weights, every: N, method: mean|cat_svd}' },
);

const mergeFields = z.strictObject({
  method: oneOf(MERGE_METHODS),
  weights: z
    .array(num().gte(-L.MAX_SCALE, `must be >= ${-L.MAX_SCALE}`).lte(L.MAX_SCALE, `must be <= ${L.MAX_SCALE}`))
    .min(1, 'must not be empty')
    .max(L.MAX_TASKS, `must have at most ${L.MAX_TASKS} entries`)
    .optional(),
  density: fraction(false).optional(),
  majority_sign: z.enum(['total', 'frequency'], { error: 'must be total or frequency' }).optional(),
  rank: z
    .union([int(1, L.MAX_MERGE_RANK), z.literal('full')], { error: 'must be a positive integer or "full"' })
    .optional(),
  seed: int(0, Number.MAX_SAFE_INTEGER).optional(),
  space: z.enum(['delta', 'factors'], { error: 'must be delta or factors' }).optional(),
});

export const fileFields = z.strictObject({
  name: str(L.MAX_NAME_CHARS).optional(),
  base_model: path(),
  ...overrides,
  data: dataFields.optional(),
  tasks: z
    .array(taskFields)
    .min(1, 'must list at least one task')
    .max(L.MAX_TASKS, `must list at most ${L.MAX_TASKS} tasks`)
    .optional(),
  sync: syncFields.optional(),
  merge: z.union([z.literal('none'), mergeFields], { error: 'must be "none" or {method: …}' }).optional(),
});

export type FileSpec = z.infer<typeof fileFields>;
export type FileTask = z.infer<typeof taskFields>;
export type FileLora = z.infer<typeof loraFields>;
export type FileCoto = z.infer<typeof cotoFields>;
export type FileTraining = z.infer<typeof trainingFields>;
export type FileMerge = z.infer<typeof mergeFields>;
