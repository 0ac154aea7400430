// The job spec's file form (YAML or JSON, snake_case keys) as a zod schema. Every field is optional
// where a default exists: the defaults live with the library concepts (shared/lora, shared/coto,
// shared/train, shared/merge) and are applied when the spec is resolved (to-library.ts).
import { z } from 'zod';
import { MODULE_NAMES } from '../model/llama.ts';
import { MERGE_METHODS } from '../merge/options.ts';
import { BASE_WEIGHTS_MODES, LR_SCHEDULES } from '../train/settings.ts';
import { SPARSITY_CRITERIA } from '../lora/types.ts';

const int = (min: number) => z.int({ error: 'must be an integer' }).gte(min, `must be >= ${min}`);
const num = () => z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be finite');
const positive = () => num().gt(0, 'must be > 0');
const fraction = (lowInclusive: boolean) =>
  (lowInclusive ? num().gte(0, 'must be >= 0') : num().gt(0, 'must be > 0')).lte(1, 'must be <= 1');
const path = () => z.string({ error: 'must be a path (string)' }).min(1, 'must not be empty');
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });

const loraFields = z.strictObject({
  r: int(1),
  alpha: positive(),
  dropout: num().gte(0, 'must be >= 0').lt(1, 'must be < 1'),
  target_modules: z.array(oneOf(MODULE_NAMES)).min(1, 'must name at least one module'),
  use_rslora: z.boolean({ error: 'must be true or false' }),
  // Training-only methods (docs/METHODS.md); cross-field rules are checked in parse.ts.
  dropout_samples: int(1).lte(64, 'must be <= 64'),
  sparsity: z.strictObject({
    ratio: num().gte(0, 'must be >= 0').lt(1, 'must be < 1'),
    criterion: oneOf(SPARSITY_CRITERIA).optional(),
    batches: int(1).lte(64, 'must be <= 64').optional(),
  }),
  split: z.strictObject({ groups: int(2), active: int(1) }),
});

const cotoFields = z.strictObject({
  enabled: z.boolean({ error: 'must be true or false' }),
  p_start: fraction(false),
  p_end: fraction(false),
  ramp_fraction: fraction(false),
});

const trainingFields = z.strictObject({
  steps: int(1),
  batch_size: int(1),
  seq_len: int(2),
  grad_accum: int(1),
  lr: positive(),
  warmup_steps: int(0),
  schedule: oneOf(LR_SCHEDULES),
  min_lr_ratio: fraction(true),
  weight_decay: num().gte(0, 'must be >= 0'),
  betas: z.tuple(
    [num().gte(0, 'must be >= 0').lt(1, 'must be < 1'), num().gte(0, 'must be >= 0').lt(1, 'must be < 1')],
    {
      error: 'must be a list of two numbers [beta1, beta2]',
    },
  ),
  eps: positive(),
  max_grad_norm: num().gte(0, 'must be >= 0'),
  eval_every: int(0),
  eval_batches: int(1),
  checkpoint_every: int(0),
  keep_checkpoints: int(0),
  log_every: int(1),
  gradient_checkpointing: z.union([z.boolean(), z.literal('auto')], { error: 'must be true, false or auto' }),
  base_weights: oneOf(BASE_WEIGHTS_MODES),
  rdrop: z.strictObject({ alpha: num().gte(0, 'must be >= 0') }),
});

const dataFields = z.strictObject({ train: path(), eval: path().optional() });

const overrides = {
  seed: int(0).optional(),
  lora: loraFields.partial().optional(),
  coto: cotoFields.partial().optional(),
  training: trainingFields.partial().optional(),
};

const taskFields = z.strictObject({
  name: z
    .string({ error: 'must be a string' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", "." or "-"'),
  data: dataFields,
  replicas: int(1).optional(),
  ...overrides,
});

const syncFields = z.discriminatedUnion(
  'mode',
  [
    z.strictObject({ mode: z.literal('gradients') }),
    z.strictObject({
      mode: z.literal('weights'),
      every: int(1),
      method: z.enum(['mean', 'cat_svd'], { error: 'must be mean or cat_svd' }).optional(),
    }),
  ],
  { error: 'must be {mode: gradients} or {mode: weights, every: N, method: mean|cat_svd}' },
);

const mergeFields = z.strictObject({
  method: oneOf(MERGE_METHODS),
  weights: z.array(num()).min(1, 'must not be empty').optional(),
  density: fraction(false).optional(),
  majority_sign: z.enum(['total', 'frequency'], { error: 'must be total or frequency' }).optional(),
  rank: z.union([int(1), z.literal('full')], { error: 'must be a positive integer or "full"' }).optional(),
  seed: int(0).optional(),
  space: z.enum(['delta', 'factors'], { error: 'must be delta or factors' }).optional(),
});

export const fileFields = z.strictObject({
  name: z.string({ error: 'must be a string' }).optional(),
  base_model: path(),
  ...overrides,
  data: dataFields.optional(),
  tasks: z.array(taskFields).min(1, 'must list at least one task').optional(),
  sync: syncFields.optional(),
  merge: z.union([z.literal('none'), mergeFields], { error: 'must be "none" or {method: …}' }).optional(),
});

export type FileSpec = z.infer<typeof fileFields>;
export type FileTask = z.infer<typeof taskFields>;
export type FileLora = z.infer<typeof loraFields>;
export type FileCoto = z.infer<typeof cotoFields>;
export type FileTraining = z.infer<typeof trainingFields>;
export type FileMerge = z.infer<typeof mergeFields>;
