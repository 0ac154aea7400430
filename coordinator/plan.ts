// From a validated job spec to shards: one shard per (task, replica); a replica trains on the
// data slice `replica` of `replicas` (shardExamples in the data library), so slices are disjoint.
import { randomBytes } from 'node:crypto';
import { layerOfModule } from '../shared/lora/types.ts';
import { objectNames } from '../shared/nats/subjects.ts';
import { resolveTask, type JobSpec } from '../shared/spec/job-spec.ts';
import type { ShardPlan } from '../worker/protocol.ts';
import type { JobRecord, LayerStats, ShardRecord } from './types.ts';

export function newJobId(): string {
  // Time-ordered (listings sort naturally) and unique across coordinator restarts.
  return `j${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

export function planJob(id: string, spec: JobSpec, specText: string, name: string): JobRecord {
  const shards: ShardRecord[] = [];
  spec.tasks.forEach((t, taskIndex) => {
    const resolved = resolveTask(spec, t.name);
    for (let replica = 0; replica < t.replicas; replica++) {
      shards.push({
        id: `${id}-t${taskIndex}-r${replica}`,
        task: t.name,
        taskIndex,
        replica,
        replicas: t.replicas,
        state: 'pending',
        workerId: '',
        device: '',
        step: 0,
        totalSteps: resolved.training.steps,
        loss: Number.NaN,
        tokens: 0,
        attempts: 0,
        checkpoint: null,
        final: null,
      });
    }
  });
  const now = Date.now();
  return {
    id,
    name: name || spec.name || spec.tasks.map((t) => t.name).join('+'),
    state: 'queued',
    reason: 'waiting for devices',
    specText,
    spec,
    createdMs: now,
    updatedMs: now,
    shards,
    artifacts: [],
    rounds: {},
    layers: {},
    metrics: {},
    shapley: {},
  };
}

/** Steps between cluster checkpoints when the spec asks for none (resume needs some). */
const DEFAULT_CLUSTER_CHECKPOINT = 10;

export function shardPlan(job: JobRecord, shard: ShardRecord): ShardPlan {
  const resolved = resolveTask(job.spec, shard.task);
  return {
    jobId: job.id,
    shardId: shard.id,
    task: shard.task,
    replica: shard.replica,
    replicas: shard.replicas,
    resolved,
    sync: job.spec.sync,
    checkpointEvery:
      resolved.training.checkpoint_every > 0 ? resolved.training.checkpoint_every : DEFAULT_CLUSTER_CHECKPOINT,
    objects: {
      checkpoint: objectNames.checkpoint(job.id, shard.id),
      final: objectNames.shardFinal(job.id, shard.task, shard.replica),
      round: objectNames.replicaRound(job.id, shard.task, shard.replica, 0).replace('/rounds/0/', '/rounds/{round}/'),
    },
  };
}

export function emptyLayerStats(layers: number): LayerStats {
  const z = () => new Array<number>(layers).fill(0);
  return { activationCounts: z(), lossActiveSum: z(), lossActiveN: z(), lossInactiveSum: z(), lossInactiveN: z() };
}

/** Folds one step's report (loss with these layers on) into the per-layer figures. */
export function addLayerStep(stats: LayerStats, activeLayers: number[], loss: number): void {
  const on = new Set(activeLayers);
  for (let l = 0; l < stats.activationCounts.length; l++) {
    if (on.has(l)) {
      stats.activationCounts[l]++;
      if (Number.isFinite(loss)) {
        stats.lossActiveSum[l] += loss;
        stats.lossActiveN[l]++;
      }
    } else if (Number.isFinite(loss)) {
      stats.lossInactiveSum[l] += loss;
      stats.lossInactiveN[l]++;
    }
  }
}

export { layerOfModule };
