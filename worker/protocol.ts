// What the coordinator tells a runner (ShardPlan, inside Assignment.plan as JSON) and what a runner
// reports back at the end (ShardSummary, inside ShardDone.summary), plus the messages between the
// node agent and its runners (threads or processes).
import type { ResolvedTask, SyncSpec } from '../shared/spec/job-spec.ts';

export interface ShardPlan {
  jobId: string;
  shardId: string;
  /** Task name; replicas of one task share it. */
  task: string;
  replica: number;
  replicas: number;
  /** The task with every setting filled in (seed = the job's CoTo seed for this task). */
  resolved: ResolvedTask;
  sync: SyncSpec;
  /** Steps between checkpoints written to the object store (0 = only at round ends). */
  checkpointEvery: number;
  /** Object-store names the runner's outputs go to (deterministic: re-writes are idempotent). */
  objects: {
    checkpoint: string;
    final: string;
    /** Template with {round}. */
    round: string;
  };
}

export interface ShardSummary {
  steps: number;
  tokens: number;
  finalLoss: number | null;
  seconds: number;
}

/** Evaluate one task adapter under several layer coalitions (Shapley sampling). */
export interface EvalPlan {
  task: ResolvedTask;
  /** Object name of the task adapter (safetensors). */
  adapterObject: string;
  /** Each coalition lists the layers whose adapters are on. */
  coalitions: number[][];
  maxBatches: number;
}

/** Resume point handed to a runner. */
export interface ResumeState {
  step: number;
  /** Serialized checkpoint (trainer state + adapter), from the object store. */
  checkpoint: Uint8Array | null;
}

export type HostToRunner =
  | { type: 'start'; plan: ShardPlan; resume: ResumeState; backend?: string }
  | { type: 'gradSum'; step: number; sums: Uint8Array; tokens: number; lossSum: number }
  | { type: 'roundMerged'; round: number; adapter: Uint8Array }
  | { type: 'stop'; reason: string }
  | { type: 'eval'; plan: EvalPlan; adapter: Uint8Array; backend?: string };

export type RunnerToHost =
  | {
      type: 'progress';
      step: number;
      loss: number;
      lr: number;
      p: number;
      tokens: number;
      tokensPerSec: number;
      activeLayers: number[];
      numLayers: number;
    }
  | { type: 'grads'; step: number; sums: Uint8Array; tokens: number; lossSum: number }
  | { type: 'roundAdapter'; round: number; step: number; adapter: Uint8Array }
  | { type: 'checkpoint'; step: number; data: Uint8Array }
  | { type: 'done'; adapter: Uint8Array; summary: ShardSummary }
  | { type: 'stopped'; step: number }
  | { type: 'failed'; error: string }
  | { type: 'evalDone'; losses: number[] };

export const roundObject = (template: string, round: number) => template.replace('{round}', String(round));
