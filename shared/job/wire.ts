// A JobSpec written back in the file form: what a client sends to the coordinator (SubmitJob) and
// what the coordinator hands to workers inside a shard plan. Every task is written out in full, so
// parsing the wire text gives back the same JobSpec, whatever the original file left to defaults.
import { cotoToFile, loraToFile, mergeToFile, trainingToFile } from './to-library.ts';
import type { FileSpec } from './schema.ts';
import type { JobSpec, ResolvedTask } from './types.ts';

export function specToWire(spec: JobSpec): string {
  const file: FileSpec = {
    ...(spec.name !== undefined ? { name: spec.name } : {}),
    base_model: spec.baseModel,
    seed: spec.seed,
    tasks: spec.tasks.map((t) => ({
      name: t.name,
      data: { ...t.data },
      replicas: t.replicas,
      seed: t.seed,
      lora: loraToFile(t.lora),
      coto: cotoToFile(t.coto),
      training: trainingToFile(t.training),
    })),
    sync: spec.sync,
    merge: spec.merge ? mergeToFile(spec.merge) : 'none',
  };
  return JSON.stringify(file, null, 2);
}

/** An input of a job: the base model directory or a data file, and the spec field that names it. */
export interface JobInput {
  kind: 'model' | 'data';
  field: string;
}

/** The spec with every input path (base model, data files) rewritten by `fn` (e.g. to uploaded objects). */
export async function mapInputPaths(
  spec: JobSpec,
  fn: (path: string, input: JobInput) => Promise<string>,
): Promise<JobSpec> {
  const data = (i: number, which: 'train' | 'eval'): JobInput => ({ kind: 'data', field: `tasks[${i}].data.${which}` });
  const baseModel = await fn(spec.baseModel, { kind: 'model', field: 'base_model' });
  const tasks: ResolvedTask[] = [];
  for (const [i, t] of spec.tasks.entries()) {
    tasks.push({
      ...t,
      baseModel,
      data: {
        train: await fn(t.data.train, data(i, 'train')),
        ...(t.data.eval !== undefined ? { eval: await fn(t.data.eval, data(i, 'eval')) } : {}),
      },
    });
  }
  return { ...spec, baseModel, tasks };
}
