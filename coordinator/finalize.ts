// The end of a job: each task's adapter stored as a PEFT directory, the final merge of the task
// adapters, the per-layer CoTo figures with Shapley estimates, and the report. Object names are
// deterministic and events carry msg ids, so finishing twice (a restart mid-merge) yields one result.
import { COTO_DEFAULTS } from '../shared/coto/schedule.ts';
import { errorMessage } from '../shared/errors.ts';
import type { GenerationScore } from '../shared/gen/chorus/v1/worker.ts';
import { adapterFromObjectBytes, adapterToObjectBytes, peftConfigText } from '../shared/formats/peft.ts';
import type { LoraAdapter } from '../shared/lora/types.ts';
import type { EventData, EventType } from '../shared/nats/events.ts';
import { objectNames } from '../shared/nats/subjects.ts';
import type { ShapleyEstimate } from './evals.ts';
import { runMerge } from './merge/pool.ts';
import type { NatsStore } from './nats-store.ts';
import type { JobRecord } from './types.ts';

/** What finishing a job needs from the coordinator. */
export interface FinalizeDeps {
  store: NatsStore;
  publish<T extends EventType>(type: T, jobId: string, data: EventData<T>, msgId: string): Promise<unknown>;
  saveJob(job: JobRecord): Promise<void>;
  shapley(job: JobRecord, task: string, layers: number, samples: number): Promise<ShapleyEstimate>;
  /** The adapter's generation scores alone (training.eval_generate), when no coalition is evaluated. */
  generation(job: JobRecord, task: string): Promise<GenerationScore>;
}

/** Stores one result object and records its SHA-256 (clients check their downloads against it). */
async function putArtifact(deps: FinalizeDeps, job: JobRecord, artifacts: string[], name: string, data: Uint8Array) {
  const info = await deps.store.putObject(name, data);
  job.artifactSha256 = { ...job.artifactSha256, [name]: info.sha256 };
  artifacts.push(name);
  return info;
}

export async function finalizeJob(deps: FinalizeDeps, job: JobRecord): Promise<void> {
  const artifacts: string[] = [];
  job.artifactSha256 = {};
  const taskAdapters = await storeTaskAdapters(deps, job, artifacts);
  const merged = await mergeTaskAdapters(deps, job, taskAdapters, artifacts);
  for (const t of job.spec.tasks) await publishLayerFigures(deps, job, t.name);
  const info = await putArtifact(
    deps,
    job,
    artifacts,
    objectNames.report(job.id),
    new TextEncoder().encode(reportText(job, merged)),
  );
  job.artifacts = artifacts;
  await deps.saveJob(job);
  await deps.publish('report.ready', job.id, { object: info.name, artifacts }, `${job.id}.report.ready`);
}

async function storeTaskAdapters(deps: FinalizeDeps, job: JobRecord, artifacts: string[]): Promise<LoraAdapter[]> {
  const adapters: LoraAdapter[] = [];
  for (const t of job.spec.tasks) {
    // Replicas end identical (gradients: same updates; weights: the last round's merge), so
    // replica 0's final adapter is the task's adapter.
    const shard = job.shards.find((s) => s.task === t.name && s.replica === 0)!;
    if (!shard.final) throw new Error(`task ${t.name} has no final adapter`);
    const bytes = await deps.store.getAnnounced(shard.final.object, shard.final.sha256);
    const adapter = adapterFromObjectBytes(bytes, shard.final.object);
    adapters.push(adapter);
    await putArtifact(deps, job, artifacts, objectNames.taskAdapter(job.id, t.name), adapterToObjectBytes(adapter));
    const config = new TextEncoder().encode(peftConfigText(adapter));
    await putArtifact(deps, job, artifacts, objectNames.taskConfig(job.id, t.name), config);
    const replicas = job.shards.filter((s) => s.task === t.name);
    job.metrics[t.name] = {
      steps: shard.totalSteps,
      tokens: replicas.reduce((s, r) => s + r.tokens, 0),
      finalLoss: replicas.every((r) => Number.isFinite(r.loss))
        ? replicas.reduce((s, r) => s + r.loss, 0) / replicas.length
        : null,
    };
  }
  return adapters;
}

type Merged = { object: string; sha256: string; method: string } | null;

async function mergeTaskAdapters(
  deps: FinalizeDeps,
  job: JobRecord,
  adapters: LoraAdapter[],
  artifacts: string[],
): Promise<Merged> {
  const merge = job.spec.merge;
  if (!merge) {
    await deps.publish('merge.done', job.id, { method: 'none', object: null, sha256: null }, `${job.id}.merge.done`);
    return null;
  }
  const mergedBytes = await runMerge({
    kind: 'merge',
    adapters: adapters.map(adapterToObjectBytes),
    labels: job.spec.tasks.map((t) => t.name),
    options: merge,
  });
  const adapter = adapterFromObjectBytes(mergedBytes, 'merged adapter');
  const info = await putArtifact(deps, job, artifacts, objectNames.mergedAdapter(job.id), mergedBytes);
  const config = new TextEncoder().encode(peftConfigText(adapter));
  await putArtifact(deps, job, artifacts, objectNames.mergedConfig(job.id), config);
  await deps.publish(
    'merge.done',
    job.id,
    { method: merge.method, object: info.name, sha256: info.sha256 },
    `${job.id}.merge.done`,
  );
  return { object: info.name, sha256: info.sha256, method: merge.method };
}

/** The task's per-layer CoTo figures, with Shapley estimates from coalitions evaluated on the workers. */
async function publishLayerFigures(deps: FinalizeDeps, job: JobRecord, task: string): Promise<void> {
  const activity = job.layers[task];
  const layers = activity?.numLayers ?? 0;
  const spec = job.spec.tasks.find((t) => t.name === task)!;
  // Plain LoRA (coto null) has no schedule of its own: its figures use the default sample count.
  const samples = (spec.coto ?? COTO_DEFAULTS).shapleySamples;
  if (!job.shapley[task] && layers > 0 && samples === 0) {
    job.metrics[task].shapleyNote = 'not estimated: coto.shapley_samples is 0';
    // The generation scores ride with the coalitions otherwise; here they take one pass of their own.
    if (spec.training.evalGenerate !== undefined && !job.metrics[task].generation) {
      try {
        job.metrics[task].generation = await deps.generation(job, task);
      } catch (err) {
        job.metrics[task].generationNote = `not scored: ${errorMessage(err)}`;
      }
    }
  } else if (!job.shapley[task] && layers > 0) {
    try {
      const estimate = await deps.shapley(job, task, layers, samples);
      job.shapley[task] = estimate.values;
      job.metrics[task].coalitionLoss = { noAdapters: estimate.noAdapters, allAdapters: estimate.allAdapters };
      if (estimate.generation) job.metrics[task].generation = estimate.generation;
    } catch (err) {
      job.metrics[task].shapleyNote = `not estimated: ${errorMessage(err)}`;
    }
  }
  await deps.publish(
    'coto.layers',
    job.id,
    {
      task,
      activationCounts: activity ? [...activity.counts] : [],
      meanLossActive: activity?.meanLossActive() ?? [],
      meanLossInactive: activity?.meanLossInactive() ?? [],
      shapley: job.shapley[task] ?? null,
      ...(job.metrics[task].generation ? { generation: job.metrics[task].generation } : {}),
    },
    `${job.id}.${task}.coto.layers`,
  );
}

function reportText(job: JobRecord, merged: Merged): string {
  const report = {
    jobId: job.id,
    name: job.name,
    baseModel: job.spec.baseModel,
    sync: job.spec.sync,
    merge: merged,
    createdMs: job.createdMs,
    finishedMs: Date.now(),
    tasks: job.spec.tasks.map((t) => {
      const activity = job.layers[t.name];
      const shapley = job.shapley[t.name] ?? null;
      const active = activity?.meanLossActive() ?? [];
      const inactive = activity?.meanLossInactive() ?? [];
      return {
        name: t.name,
        replicas: t.replicas,
        ...job.metrics[t.name],
        adapter: objectNames.taskAdapter(job.id, t.name),
        layers: (activity?.counts ?? []).map((count, l) => ({
          layer: l,
          activations: count,
          meanLossActive: active[l],
          meanLossInactive: inactive[l],
          shapley: shapley ? shapley[l] : null,
        })),
      };
    }),
  };
  return JSON.stringify(report, null, 2) + '\n';
}
