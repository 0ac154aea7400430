// Reading a job spec: YAML or JSON text (YAML 1.2 reads both) → schema check → every task resolved
// into library settings (defaults ← top level ← task overrides) with paths made absolute. Every
// problem is reported with the field it is about ("tasks[1].training.lr: must be > 0"), all at once.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { ChorusError, errorMessage } from '../errors.ts';
import { MAX_SHARD_STEPS, MAX_SHARDS } from './limits.ts';
import { fileFields, type FileSpec, type FileTask } from './schema.ts';
import { readSpecText } from './spec-text.ts';
import { cotoScheduleOf, fileKeyOf, loraConfigOf, mergeOptionsOf, trainingOf } from './to-library.ts';
import type { JobSpec, ResolvedTask, SyncSpec } from './types.ts';
import type { TrainingSettings } from '../train/settings.ts';
import { methodProblems } from './method-rules.ts';

/** Parses and resolves a spec. `sourcePath` names the file in errors and anchors relative paths (default: cwd). */
export function parseJobSpec(text: string, opts: { sourcePath?: string } = {}): JobSpec {
  const source = opts.sourcePath ?? '<job spec>';
  const read = readSpecText(text);
  if (!read.ok) fail(source, read.problems);
  const raw = read.value;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    fail(source, ['(top level): must be a mapping of fields (base_model, training, data or tasks, …)']);
  }
  const parsed = fileFields.safeParse(raw);
  if (!parsed.success) fail(source, issueLines(parsed.error.issues, raw));
  const baseDir = opts.sourcePath ? dirname(resolve(opts.sourcePath)) : process.cwd();
  const spec = resolveSpec(parsed.data, baseDir, source);
  if (opts.sourcePath) spec.sourcePath = resolve(opts.sourcePath);
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

/** The task `name` of a spec (the only one when `name` is omitted). */
export function taskOf(spec: JobSpec, name?: string): ResolvedTask {
  const t = name === undefined ? spec.tasks[0] : spec.tasks.find((x) => x.name === name);
  if (!t) {
    throw new ChorusError(`job spec has no task named "${name}" (tasks: ${spec.tasks.map((x) => x.name).join(', ')})`);
  }
  return t;
}

function resolveSpec(f: FileSpec, baseDir: string, source: string): JobSpec {
  const problems: string[] = [];
  if (f.data && f.tasks) problems.push('data: give either data (one task) or tasks (several), not both');
  if (!f.data && !f.tasks) problems.push('data: required (or tasks)');
  if (problems.length > 0) fail(source, problems);
  const fileTasks: FileTask[] = f.tasks ?? [{ name: 'default', data: f.data! }];
  const sync: SyncSpec =
    f.sync?.mode === 'weights'
      ? { mode: 'weights', every: f.sync.every, method: f.sync.method ?? 'cat_svd' }
      : { mode: 'gradients' };
  const baseModel = absolutise(f.base_model, baseDir);
  const tasks: ResolvedTask[] = [];
  const names = new Set<string>();
  fileTasks.forEach((t, i) => {
    const at = f.tasks ? `tasks[${i}].` : '';
    if (names.has(t.name)) problems.push(`tasks[${i}].name: duplicate task name "${t.name}"`);
    names.add(t.name);
    // Where a bad value came from: the task's override, or the top level.
    const where = (section: 'training' | 'coto', key: string) =>
      (t[section] as Record<string, unknown> | undefined)?.[fileKeyOf(section, key)] !== undefined
        ? `tasks[${i}].${section}.${fileKeyOf(section, key)}`
        : `${section}.${fileKeyOf(section, key)}`;
    const training = trainingOf(f.training, t.training);
    const coto = cotoScheduleOf(f.coto, t.coto);
    if (training.steps === undefined) {
      problems.push(`${at}training.steps: required`);
      return;
    }
    if (training.warmupSteps! > training.steps) {
      problems.push(`${where('training', 'warmupSteps')}: must be <= training.steps (${training.steps})`);
    }
    if (coto && coto.pStart > coto.pEnd)
      problems.push(`${where('coto', 'pStart')}: must be <= coto.p_end (${coto.pEnd})`);
    // Plain LoRA has no schedule to carry it (its layer figures use COTO_DEFAULTS); refused, not ignored.
    if (!coto && (t.coto?.shapley_samples ?? f.coto?.shapley_samples) !== undefined)
      problems.push(`${where('coto', 'shapleySamples')}: applies only with CoTo on (coto.enabled is false)`);
    const lora = loraConfigOf(f.lora, t.lora);
    const fieldAt = (section: 'lora' | 'training', key: string) =>
      (t[section] as Record<string, unknown> | undefined)?.[key] !== undefined
        ? `tasks[${i}].${section}.${key}`
        : `${section}.${key}`;
    problems.push(...methodProblems(lora, training, sync, fieldAt));
    tasks.push({
      name: t.name,
      baseModel,
      data: {
        train: absolutise(t.data.train, baseDir),
        ...(t.data.eval !== undefined ? { eval: absolutise(t.data.eval, baseDir) } : {}),
      },
      replicas: t.replicas ?? 1,
      seed: t.seed ?? f.seed ?? 0,
      lora,
      coto,
      training: training as TrainingSettings,
    });
  });
  // Total work: bounds on each field alone still allow 64 tasks × 64 replicas × 10^6 steps.
  const shards = tasks.reduce((n, t) => n + t.replicas, 0);
  if (shards > MAX_SHARDS) {
    problems.push(`${f.tasks ? 'tasks[*].replicas' : 'replicas'}: ${shards} shards in all exceeds ${MAX_SHARDS}`);
  }
  const work = tasks.reduce((n, t) => n + t.replicas * t.training.steps, 0);
  if (work > MAX_SHARD_STEPS) {
    problems.push(
      `training.steps: replicas × steps summed over tasks is ${work}, more than the ${MAX_SHARD_STEPS} limit`,
    );
  }
  const merge = f.merge === undefined || f.merge === 'none' ? null : mergeOptionsOf(f.merge);
  if (merge?.weights && merge.weights.length !== fileTasks.length) {
    problems.push(`merge.weights: expected ${fileTasks.length} weights (one per task), got ${merge.weights.length}`);
  }
  if (merge?.space === 'factors' && merge.method === 'svd') {
    // Acting on A and B separately has no meaning for an SVD of the sum.
    problems.push('merge.space: "factors" is not available for method svd');
  }
  if (merge?.space === 'factors' && merge.method === 'orthogonal_dropout') {
    problems.push(
      'merge.space: "factors" is not available for method orthogonal_dropout (it masks ΔW\'s output units)',
    );
  }
  if (problems.length > 0) fail(source, problems);
  return {
    ...(f.name !== undefined ? { name: f.name } : {}),
    baseModel,
    seed: f.seed ?? 0,
    tasks,
    sync,
    merge,
  };
}

function absolutise(p: string, baseDir: string): string {
  // URIs (e.g. chorus-object://… for files uploaded to a cluster's object store) are not paths.
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(p)) return p;
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** Problems listed at most; the rest are counted (a hostile spec can have 100k unknown keys). */
const MAX_PROBLEMS = 20;
const MAX_PROBLEM_CHARS = 300;

function fail(source: string, problems: string[]): never {
  const shown = problems
    .slice(0, MAX_PROBLEMS)
    .map((p) => `  - ${p.length > MAX_PROBLEM_CHARS ? `${p.slice(0, MAX_PROBLEM_CHARS)}…` : p}`);
  if (problems.length > MAX_PROBLEMS) shown.push(`  … and ${problems.length - MAX_PROBLEMS} more problem(s)`);
  throw new ChorusError(`invalid job spec ${source}:\n${shown.join('\n')}`);
}

function formatPath(p: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out || '(top level)';
}

function valueAt(root: unknown, p: ReadonlyArray<PropertyKey>): unknown {
  let v: unknown = root;
  for (const k of p) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
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
