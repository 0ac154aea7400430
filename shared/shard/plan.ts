// The shard, the unit the coordinator places on one device: a replica of one task's adapter trained
// on its slice of the task's data. Both sides use this module: the coordinator writes plans
// (ShardPlan / EvalPlan proto messages), the worker reads them into what a runner needs, and both
// derive the shard's object names from its ids (so no name travels as a template).
import type * as wire from '../gen/chorus/v1/worker.ts';
import { parseJobSpec, taskOf } from '../job/parse.ts';
import type { ResolvedTask, SyncSpec } from '../job/types.ts';
import { objectNames } from '../nats/subjects.ts';

/** A shard's plan as a runner uses it: the task resolved, the sync mode of its job. */
export interface ShardPlan {
  jobId: string;
  shardId: string;
  task: ResolvedTask;
  replica: number;
  replicas: number;
  sync: SyncSpec;
  /** Steps between checkpoints written to the object store. */
  checkpointEvery: number;
}

/** What a runner reports when its shard is done. */
export interface ShardSummary {
  steps: number;
  tokens: number;
  /** Loss of the last step; null when it had no loss-bearing token. */
  finalLoss: number | null;
  seconds: number;
}

/** Evaluate one task adapter under several layer coalitions (Shapley values). */
export interface EvalPlan {
  jobId: string;
  task: ResolvedTask;
  /** The task adapter (PEFT safetensors) in the object store. */
  adapterObject: string;
  /** Each coalition lists the layers whose adapters are on. */
  coalitions: number[][];
  maxBatches: number;
  device: string;
  /** Also score the whole adapter by greedy generation (training.eval_generate). */
  generate: boolean;
}

/** Steps between cluster checkpoints when a task asks for none: a moved shard needs one to resume from. */
const CLUSTER_CHECKPOINT_DEFAULT = 10;

export function clusterCheckpointEvery(task: ResolvedTask): number {
  return task.training.checkpointEvery > 0 ? task.training.checkpointEvery : CLUSTER_CHECKPOINT_DEFAULT;
}

/** The object-store names of a shard's outputs (deterministic: writing one twice overwrites it). */
export function shardObjects(s: { jobId: string; shardId: string; task: string; replica: number }) {
  return {
    checkpoint: objectNames.checkpoint(s.jobId, s.shardId),
    final: objectNames.shardFinal(s.jobId, s.task, s.replica),
    round: (round: number) => objectNames.replicaRound(s.jobId, s.task, s.replica, round),
  };
}

/** A shard id names its job: "<jobId>-t<task index>-r<replica>". */
export function shardId(jobId: string, taskIndex: number, replica: number): string {
  return `${jobId}-t${taskIndex}-r${replica}`;
}

export function jobIdOfShard(id: string): string {
  const at = id.lastIndexOf('-t');
  return at > 0 ? id.slice(0, at) : '';
}

/** The worker's side: the plan a coordinator sent, resolved (the spec is parsed here, once). */
export function shardPlanFromWire(p: wire.ShardPlan): ShardPlan {
  const spec = parseJobSpec(p.jobSpec, { sourcePath: `plan of shard ${p.shardId}` });
  return {
    jobId: p.jobId,
    shardId: p.shardId,
    task: taskOf(spec, p.task),
    replica: p.replica,
    replicas: p.replicas,
    sync: spec.sync,
    checkpointEvery: p.checkpointEvery,
  };
}

export function evalPlanFromWire(p: wire.EvalPlan): EvalPlan {
  const spec = parseJobSpec(p.jobSpec, { sourcePath: `evaluation plan of job ${p.jobId}` });
  return {
    jobId: p.jobId,
    task: taskOf(spec, p.task),
    adapterObject: p.adapterObject,
    coalitions: p.coalitions.map((c) => c.layers),
    maxBatches: p.maxBatches,
    device: p.device,
    generate: p.generate,
  };
}

export function evalPlanToWire(jobSpec: string, plan: Omit<EvalPlan, 'task'> & { task: string }): wire.EvalPlan {
  return { ...plan, jobSpec, coalitions: plan.coalitions.map((layers) => ({ layers })) };
}
