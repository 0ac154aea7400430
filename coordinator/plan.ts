// From a validated job spec to shards: one shard per (task, replica); a replica trains on the data
// slice `replica` of `replicas` (shardExamples in the data library), so slices are disjoint.
import { randomBytes } from 'node:crypto';
import type * as wire from '../shared/gen/chorus/v1/worker.ts';
import type { JobSpec } from '../shared/job/types.ts';
import { specToWire } from '../shared/job/wire.ts';
import { clusterCheckpointEvery, shardId } from '../shared/shard/plan.ts';
import type { JobRecord, ShardRecord } from './types.ts';

export function newJobId(): string {
  // Time-ordered (listings sort naturally) and unique across coordinator restarts.
  return `j${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

export function planJob(id: string, spec: JobSpec, name: string): JobRecord {
  const shards: ShardRecord[] = spec.tasks.flatMap((t, taskIndex) =>
    Array.from({ length: t.replicas }, (_, replica) => ({
      id: shardId(id, taskIndex, replica),
      task: t.name,
      taskIndex,
      replica,
      replicas: t.replicas,
      state: 'pending' as const,
      workerId: '',
      device: '',
      step: 0,
      totalSteps: t.training.steps,
      loss: Number.NaN,
      tokens: 0,
      attempts: 0,
      failures: 0,
      checkpoint: null,
      final: null,
    })),
  );
  const now = Date.now();
  return {
    id,
    name: name || spec.name || spec.tasks.map((t) => t.name).join('+'),
    state: 'queued',
    reason: 'waiting for devices',
    specText: specToWire(spec),
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

/** What a worker is told about a shard it runs (shared/shard/plan.ts reads it on the other side). */
export function shardPlanMessage(job: JobRecord, shard: ShardRecord): wire.ShardPlan {
  return {
    jobId: job.id,
    shardId: shard.id,
    task: shard.task,
    replica: shard.replica,
    replicas: shard.replicas,
    jobSpec: job.specText,
    checkpointEvery: clusterCheckpointEvery(job.spec.tasks[shard.taskIndex]),
  };
}
