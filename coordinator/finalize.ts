// The end of rounds and of jobs: reconciling replicas (merge library, ΔW space), the per-task
// PEFT results, the final merge of the task adapters, Shapley estimates and the report. Object
// names are deterministic, so doing any of this twice (a restart mid-merge) yields one result.
import { runMerge } from './merge-pool.ts';
import type { LoraAdapter } from '../shared/lora/types.ts';
import { objectNames } from '../shared/nats/subjects.ts';
import { resolveTask } from '../shared/spec/job-spec.ts';
import { adapterFromObjectBytes, adapterToObjectBytes, peftConfigText } from '../shared/formats/peft.ts';
import type { EvalPlan } from '../worker/protocol.ts';
import type { Coordinator } from './coordinator.ts';
import type { NatsStore } from './nats-store.ts';
import { sha256Hex } from '../shared/digest.ts';
import { shapleyPlan, shapleyValues } from './shapley.ts';
import type { JobRecord } from './types.ts';

/** An object a worker announced by name and SHA-256: exactly those bytes, or an error naming it. */
async function readAnnounced(store: NatsStore, object: string, sha256: string): Promise<Uint8Array> {
  const bytes = await store.getObject(object);
  if (!bytes) throw new Error(`object ${object} is missing from the object store`);
  const got = sha256Hex(bytes);
  if (sha256 && got !== sha256)
    throw new Error(`object ${object} has SHA-256 ${got} but the worker announced ${sha256}`);
  return bytes;
}

export async function reconcileRound(
  store: NatsStore,
  job: JobRecord,
  task: string,
  round: number,
  objects: Array<{ object: string; sha256: string }>,
  method: 'mean' | 'cat_svd',
): Promise<{ name: string; size: number; sha256: string }> {
  const name = objectNames.roundMerged(job.id, task, round);
  const existing = await store.getObject(name);
  if (existing) return { name, size: existing.length, sha256: sha256Hex(existing) };
  // adapter.ready named each object and its digest: merge exactly what the replicas announced.
  const replicas = await Promise.all(objects.map(({ object, sha256 }) => readAnnounced(store, object, sha256)));
  const labels = objects.map((o) => o.object);
  return store.putObject(name, await runMerge({ kind: 'reconcile', adapters: replicas, labels, options: { method } }));
}

export async function finalizeJob(coord: Coordinator, job: JobRecord): Promise<void> {
  const store = coord.store;
  const artifacts: string[] = [];
  const taskAdapters: LoraAdapter[] = [];
  for (const t of job.spec.tasks) {
    // Replicas end identical (gradients: same updates; weights: the last round's merge), so
    // replica 0's final adapter is the task's adapter.
    const shard = job.shards.find((s) => s.task === t.name && s.replica === 0)!;
    if (!shard.final) throw new Error(`task ${t.name} has no final adapter`);
    const adapter = adapterFromObjectBytes(
      await readAnnounced(store, shard.final.object, shard.final.sha256),
      shard.final.object,
    );
    taskAdapters.push(adapter);
    const bytes = adapterToObjectBytes(adapter);
    await store.putObject(objectNames.taskAdapter(job.id, t.name), bytes);
    await store.putObject(objectNames.taskConfig(job.id, t.name), new TextEncoder().encode(peftConfigText(adapter)));
    artifacts.push(objectNames.taskAdapter(job.id, t.name), objectNames.taskConfig(job.id, t.name));
    const replicas = job.shards.filter((s) => s.task === t.name);
    job.metrics[t.name] = {
      steps: shard.totalSteps,
      tokens: replicas.reduce((s, r) => s + r.tokens, 0),
      finalLoss: replicas.every((r) => Number.isFinite(r.loss))
        ? replicas.reduce((s, r) => s + r.loss, 0) / replicas.length
        : null,
    };
  }

  let merged: { object: string; sha256: string; method: string } | null = null;
  if (job.spec.merge !== 'none') {
    const m = job.spec.merge;
    const mergedBytes = await runMerge({
      kind: 'merge',
      adapters: taskAdapters.map(adapterToObjectBytes),
      labels: job.spec.tasks.map((t) => t.name),
      options: {
        method: m.method,
        ...(m.weights ? { weights: m.weights } : {}),
        ...(m.density !== undefined ? { density: m.density } : {}),
        ...(m.majority_sign ? { majoritySign: m.majority_sign } : {}),
        ...(m.seed !== undefined ? { seed: m.seed } : {}),
        ...(m.rank !== undefined ? { rank: m.rank } : {}),
        ...(m.space ? { space: m.space } : {}),
      },
    });
    const adapter = adapterFromObjectBytes(mergedBytes, 'merged adapter');
    const info = await store.putObject(objectNames.mergedAdapter(job.id), mergedBytes);
    await store.putObject(objectNames.mergedConfig(job.id), new TextEncoder().encode(peftConfigText(adapter)));
    artifacts.push(objectNames.mergedAdapter(job.id), objectNames.mergedConfig(job.id));
    merged = { object: info.name, sha256: info.sha256, method: m.method };
    await coord.publish(
      'merge.done',
      job.id,
      { method: m.method, object: info.name, sha256: info.sha256 },
      `${job.id}.merge.done`,
    );
  } else {
    await coord.publish('merge.done', job.id, { method: 'none', object: null, sha256: null }, `${job.id}.merge.done`);
  }

  // Shapley estimates: coalitions of layer adapters evaluated on the workers.
  for (const t of job.spec.tasks) {
    const stats = job.layers[t.name];
    const layers = stats?.activationCounts.length ?? 0;
    let shapley: number[] | null = job.shapley[t.name] ?? null;
    let shapleyNote = '';
    if (!shapley && layers > 0) {
      try {
        const plan = shapleyPlan(layers, 8, `${job.id}/${t.name}`);
        // Coalitions are independent: spread them over every free device and evaluate at once.
        const parts = Math.max(1, Math.min(coord.freeDevices().length, plan.coalitions.length));
        const chunks = Array.from({ length: parts }, (_, i) => plan.coalitions.filter((_, k) => k % parts === i));
        const results = await Promise.all(
          chunks.map((coalitions) => {
            const evalPlan: EvalPlan = {
              task: resolveTask(job.spec, t.name),
              adapterObject: objectNames.taskAdapter(job.id, t.name),
              coalitions,
              maxBatches: 4,
            };
            return coord.evalOnWorker(job.id, JSON.stringify(evalPlan));
          }),
        );
        const losses = plan.coalitions.map((_, k) => results[k % parts][Math.floor(k / parts)]);
        shapley = shapleyValues(plan, losses);
        job.shapley[t.name] = shapley;
        // v(all) − v(none) = Σ φ (efficiency): the report keeps both ends so readers can check.
        const at = (c: number[]) =>
          losses[plan.coalitions.findIndex((x) => x.length === c.length && x.every((l, i) => l === c[i]))];
        (job.metrics[t.name] as Record<string, unknown>).coalitionLoss = {
          noAdapters: at([]),
          allAdapters: at(Array.from({ length: layers }, (_, l) => l)),
        };
      } catch (err) {
        shapleyNote = `not estimated: ${(err as Error).message}`;
      }
    }
    await coord.publish(
      'coto.layers',
      job.id,
      {
        task: t.name,
        activationCounts: stats?.activationCounts ?? [],
        meanLossActive: (stats?.lossActiveSum ?? []).map((s, l) =>
          stats!.lossActiveN[l] ? s / stats!.lossActiveN[l] : null,
        ),
        meanLossInactive: (stats?.lossInactiveSum ?? []).map((s, l) =>
          stats!.lossInactiveN[l] ? s / stats!.lossInactiveN[l] : null,
        ),
        shapley,
      },
      `${job.id}.${t.name}.coto.layers`,
    );
    if (shapleyNote) (job.metrics[t.name] as Record<string, unknown>).shapleyNote = shapleyNote;
  }

  const report = {
    jobId: job.id,
    name: job.name,
    baseModel: job.spec.base_model,
    sync: job.spec.sync,
    merge: merged,
    createdMs: job.createdMs,
    finishedMs: Date.now(),
    tasks: job.spec.tasks.map((t) => {
      const stats = job.layers[t.name];
      const shap = job.shapley[t.name] ?? null;
      return {
        name: t.name,
        replicas: t.replicas,
        ...job.metrics[t.name],
        adapter: objectNames.taskAdapter(job.id, t.name),
        layers: (stats?.activationCounts ?? []).map((count, l) => ({
          layer: l,
          activations: count,
          meanLossActive: stats.lossActiveN[l] ? stats.lossActiveSum[l] / stats.lossActiveN[l] : null,
          meanLossInactive: stats.lossInactiveN[l] ? stats.lossInactiveSum[l] / stats.lossInactiveN[l] : null,
          shapley: shap ? shap[l] : null,
        })),
      };
    }),
  };
  const reportBytes = new TextEncoder().encode(JSON.stringify(report, null, 2) + '\n');
  const info = await store.putObject(objectNames.report(job.id), reportBytes);
  artifacts.push(info.name);
  job.artifacts = artifacts;
  await coord.saveJob(job);
  await coord.publish('report.ready', job.id, { object: info.name, artifacts }, `${job.id}.report.ready`);
}
