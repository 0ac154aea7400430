// The job spec: one schema for the local `chorus train` and for cluster jobs. On disk it is YAML
// or JSON with snake_case keys; the parsed object keeps those keys so that the file, the docs and
// the code use the same names. Both the single-task form (`data`) and the cluster form (`tasks`)
// normalise into `tasks[]`; per-task `lora`/`training`/`coto` are partial overrides that
// `resolveTask` merges over the top level.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { ChorusError, errorMessage } from '../errors.ts';

export const LORA_TARGET_MODULES = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;
export const MERGE_METHODS = [
  'linear',
  'task_arithmetic',
  'cat',
  'svd',
  'ties',
  'dare_linear',
  'dare_ties',
  'magnitude_prune',
] as const;
export const LR_SCHEDULES = ['cosine', 'linear', 'constant'] as const;

const int = (min: number) => z.int({ error: 'must be an integer' }).gte(min, `must be >= ${min}`);
const num = () => z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be finite');
const positive = () => num().gt(0, 'must be > 0');
const fraction = (lowInclusive: boolean) =>
  (lowInclusive ? num().gte(0, 'must be >= 0') : num().gt(0, 'must be > 0')).lte(1, 'must be <= 1');
const path = () => z.string({ error: 'must be a path (string)' }).min(1, 'must not be empty');

const loraFields = z.strictObject({
  r: int(1),
  alpha: positive(),
  dropout: num().gte(0, 'must be >= 0').lt(1, 'must be < 1'),
  target_modules: z
    .array(z.enum(LORA_TARGET_MODULES, { error: `must be one of ${LORA_TARGET_MODULES.join(', ')}` }))
    .min(1, 'must name at least one module'),
  use_rslora: z.boolean({ error: 'must be true or false' }),
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
  schedule: z.enum(LR_SCHEDULES, { error: `must be one of ${LR_SCHEDULES.join(', ')}` }),
  min_lr_ratio: fraction(true),
  weight_decay: num().gte(0, 'must be >= 0'),
  betas: z.tuple(
    [num().gte(0, 'must be >= 0').lt(1, 'must be < 1'), num().gte(0, 'must be >= 0').lt(1, 'must be < 1')],
    { error: 'must be a list of two numbers [beta1, beta2]' },
  ),
  eps: positive(),
  /** 0 turns clipping off. */
  max_grad_norm: num().gte(0, 'must be >= 0'),
  /** 0 turns periodic evaluation off. */
  eval_every: int(0),
  eval_batches: int(1),
  /** 0 turns periodic checkpoints off (a final one is still written). */
  checkpoint_every: int(0),
  /** How many of the newest checkpoints a local run keeps; 0 keeps all. */
  keep_checkpoints: int(0),
  log_every: int(1),
});

export type LoraSpec = z.infer<typeof loraFields>;
export type CotoSpec = z.infer<typeof cotoFields>;
export type TrainingSpec = z.infer<typeof trainingFields>;

export const DEFAULT_LORA: LoraSpec = {
  r: 8,
  alpha: 16,
  dropout: 0,
  target_modules: ['q_proj', 'v_proj'],
  use_rslora: false,
};
export const DEFAULT_COTO: CotoSpec = { enabled: true, p_start: 0.1, p_end: 1.0, ramp_fraction: 0.75 };
/** Everything but `steps`, which a spec must give (top level or per task). */
export const DEFAULT_TRAINING: Omit<TrainingSpec, 'steps'> = {
  batch_size: 8,
  seq_len: 128,
  grad_accum: 1,
  lr: 1e-3,
  warmup_steps: 0,
  schedule: 'cosine',
  min_lr_ratio: 0,
  weight_decay: 0,
  betas: [0.9, 0.999],
  eps: 1e-8,
  max_grad_norm: 1.0,
  eval_every: 50,
  eval_batches: 4,
  checkpoint_every: 100,
  keep_checkpoints: 3,
  log_every: 10,
};

const dataFields = z.strictObject({ train: path(), eval: path().optional() });

const taskFields = z.strictObject({
  name: z
    .string({ error: 'must be a string' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", "." or "-"'),
  data: dataFields,
  replicas: int(1).optional(),
  seed: int(0).optional(),
  lora: loraFields.partial().optional(),
  coto: cotoFields.partial().optional(),
  training: trainingFields.partial().optional(),
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
  method: z.enum(MERGE_METHODS, { error: `must be one of ${MERGE_METHODS.join(', ')}` }),
  weights: z.array(num()).min(1, 'must not be empty').optional(),
  density: fraction(false).optional(),
  majority_sign: z.enum(['total', 'frequency'], { error: 'must be total or frequency' }).optional(),
  rank: z.union([int(1), z.literal('full')], { error: 'must be a positive integer or "full"' }).optional(),
  seed: int(0).optional(),
  space: z.enum(['delta', 'factors'], { error: 'must be delta or factors' }).optional(),
});

const fileFields = z.strictObject({
  name: z.string({ error: 'must be a string' }).optional(),
  base_model: path(),
  seed: int(0).optional(),
  lora: loraFields.partial().optional(),
  coto: cotoFields.partial().optional(),
  training: trainingFields.partial().optional(),
  data: dataFields.optional(),
  tasks: z.array(taskFields).min(1, 'must list at least one task').optional(),
  sync: syncFields.optional(),
  merge: z
    .union([z.literal('none'), mergeFields], {
      error: 'must be "none" or {method: …}',
    })
    .optional(),
});

type FileSpec = z.infer<typeof fileFields>;
export type TaskFileSpec = z.infer<typeof taskFields>;
export type SyncSpec = { mode: 'gradients' } | { mode: 'weights'; every: number; method: 'mean' | 'cat_svd' };
export type MergeSpec = z.infer<typeof mergeFields> & { method: (typeof MERGE_METHODS)[number] };

/** A normalised job spec; paths are absolute. */
export interface JobSpec {
  name?: string;
  base_model: string;
  seed: number;
  lora: Partial<LoraSpec>;
  coto: Partial<CotoSpec>;
  training: Partial<TrainingSpec>;
  tasks: TaskSpecEntry[];
  sync: SyncSpec;
  merge: MergeSpec | 'none';
  /** The file the spec came from, when it came from one. */
  sourcePath?: string;
}

export interface TaskSpecEntry {
  name: string;
  data: { train: string; eval?: string };
  replicas: number;
  seed?: number;
  lora?: Partial<LoraSpec>;
  coto?: Partial<CotoSpec>;
  training?: Partial<TrainingSpec>;
}

/** One task with every setting filled in: what a trainer runs. */
export interface ResolvedTask {
  name: string;
  baseModel: string;
  data: { train: string; eval?: string };
  replicas: number;
  seed: number;
  lora: LoraSpec;
  coto: CotoSpec;
  training: TrainingSpec;
}

function formatPath(p: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out || '(top level)';
}

function valueAt(root: unknown, p: ReadonlyArray<PropertyKey>): unknown {
  let v: any = root;
  for (const k of p) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[k as any];
  }
  return v;
}

function issueLines(issues: z.core.$ZodIssue[], input: unknown): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${formatPath([...issue.path, key])}: unknown field`);
      continue;
    }
    if (issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined) {
      lines.push(`${formatPath(issue.path)}: required`);
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0 && 'discriminator' in issue === false) {
      // A union whose branches all failed: report the branch errors that went deepest.
      const nested = issue.errors.flat();
      if (nested.some((n) => n.path.length > 0)) {
        lines.push(
          ...issueLines(
            nested.map((n) => ({ ...n, path: [...issue.path, ...n.path] })),
            input,
          ),
        );
        continue;
      }
    }
    lines.push(`${formatPath(issue.path)}: ${issue.message}`);
  }
  return [...new Set(lines)];
}

function fail(source: string, problems: string[]): never {
  throw new ChorusError(`invalid job spec ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
}

function absolutise(p: string, baseDir: string): string {
  // URIs (e.g. chorus-object://… for files uploaded to a cluster's object store) are not paths.
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(p)) return p;
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/**
 * Parses a job spec (YAML or JSON: YAML 1.2 reads both). `sourcePath` names the file in errors and
 * is the directory relative paths resolve against (default: the current directory).
 */
export function parseJobSpec(text: string, opts: { sourcePath?: string } = {}): JobSpec {
  const source = opts.sourcePath ?? '<job spec>';
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    fail(
      source,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`;
      }),
    );
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    fail(source, ['(top level): must be a mapping of fields (base_model, training, data or tasks, …)']);
  }
  const parsed = fileFields.safeParse(raw);
  if (!parsed.success) fail(source, issueLines(parsed.error.issues, raw));
  const spec = normalise(parsed.data, opts.sourcePath ? dirname(resolve(opts.sourcePath)) : process.cwd(), source);
  if (opts.sourcePath) spec.sourcePath = resolve(opts.sourcePath);
  const problems = crossChecks(spec);
  if (problems.length > 0) fail(source, problems);
  return spec;
}

export function loadJobSpec(file: string): JobSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ChorusError(`cannot read job spec ${file}: ${errorMessage(err)}`);
  }
  return parseJobSpec(text, { sourcePath: file });
}

function normalise(f: FileSpec, baseDir: string, source: string): JobSpec {
  const problems: string[] = [];
  if (f.data && f.tasks) problems.push('data: give either data (one task) or tasks (several), not both');
  if (!f.data && !f.tasks) problems.push('data: required (or tasks)');
  if (problems.length > 0) fail(source, problems);
  const data = (d: { train: string; eval?: string }) => ({
    train: absolutise(d.train, baseDir),
    ...(d.eval !== undefined ? { eval: absolutise(d.eval, baseDir) } : {}),
  });
  const tasks: TaskSpecEntry[] = f.tasks
    ? f.tasks.map((t) => ({ ...t, data: data(t.data), replicas: t.replicas ?? 1 }))
    : [{ name: 'default', data: data(f.data!), replicas: 1 }];
  const sync: SyncSpec =
    f.sync?.mode === 'weights'
      ? { mode: 'weights', every: f.sync.every, method: f.sync.method ?? 'cat_svd' }
      : { mode: 'gradients' };
  return {
    ...(f.name !== undefined ? { name: f.name } : {}),
    base_model: absolutise(f.base_model, baseDir),
    seed: f.seed ?? 0,
    lora: f.lora ?? {},
    coto: f.coto ?? {},
    training: f.training ?? {},
    tasks,
    sync,
    merge: f.merge ?? 'none',
  };
}

/** Checks that need several fields (after task overrides are applied). */
function crossChecks(spec: JobSpec): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  spec.tasks.forEach((t, i) => {
    if (names.has(t.name)) problems.push(`tasks[${i}].name: duplicate task name "${t.name}"`);
    names.add(t.name);
    // Where a bad value came from: the task's override, or the top level.
    const where = (section: 'training' | 'coto' | 'lora', field: string) =>
      (t[section] as Record<string, unknown> | undefined)?.[field] !== undefined
        ? `tasks[${i}].${section}.${field}`
        : `${section}.${field}`;
    const { training, coto } = resolveTaskEntry(spec, t);
    if (training.steps === undefined) {
      problems.push(
        `${spec.tasks.length > 1 || spec.tasks[0].name !== 'default' ? `tasks[${i}].` : ''}training.steps: required`,
      );
      return;
    }
    if (training.warmup_steps > training.steps) {
      problems.push(`${where('training', 'warmup_steps')}: must be <= training.steps (${training.steps})`);
    }
    if (coto.p_start > coto.p_end) {
      problems.push(`${where('coto', 'p_start')}: must be <= coto.p_end (${coto.p_end})`);
    }
  });
  if (spec.merge !== 'none' && spec.merge.weights && spec.merge.weights.length !== spec.tasks.length) {
    problems.push(
      `merge.weights: expected ${spec.tasks.length} weights (one per task), got ${spec.merge.weights.length}`,
    );
  }
  if (spec.merge !== 'none' && spec.merge.space === 'factors' && spec.merge.method === 'svd') {
    // Acting on A and B separately has no meaning for an SVD of the sum.
    problems.push('merge.space: "factors" is not available for method svd');
  }
  return problems;
}

function resolveTaskEntry(spec: JobSpec, t: TaskSpecEntry) {
  const lora: LoraSpec = { ...DEFAULT_LORA, ...spec.lora, ...t.lora };
  const coto: CotoSpec = { ...DEFAULT_COTO, ...spec.coto, ...t.coto };
  const training = { ...DEFAULT_TRAINING, ...spec.training, ...t.training } as TrainingSpec;
  return { lora, coto, training };
}

/** The task `name` with defaults ← top level ← task overrides applied. */
export function resolveTask(spec: JobSpec, name?: string): ResolvedTask {
  const t = name === undefined ? spec.tasks[0] : spec.tasks.find((x) => x.name === name);
  if (!t) {
    throw new ChorusError(`job spec has no task named "${name}" (tasks: ${spec.tasks.map((x) => x.name).join(', ')})`);
  }
  const { lora, coto, training } = resolveTaskEntry(spec, t);
  return {
    name: t.name,
    baseModel: spec.base_model,
    data: t.data,
    replicas: t.replicas,
    seed: t.seed ?? spec.seed,
    lora,
    coto,
    training,
  };
}
