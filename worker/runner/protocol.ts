// The messages between a node agent and its runners (piscina threads on CPU, child processes on
// GPU). The plans themselves are the shared shard module's (shared/shard/plan.ts).
import type { EvalPlan, ShardPlan, ShardSummary } from '../../shared/shard/plan.ts';
import type { DeviceMemory } from '../../shared/train/memory-limits.ts';

/** Generation scores of an evaluated adapter (shared/eval/score.ts). */
export interface GenerationFigures {
  exactMatch: number;
  editSimilarity: number;
  examples: number;
}

/** Resume point handed to a runner. */
export interface ResumeState {
  step: number;
  /** The checkpoint blob (shared/train/checkpoint.ts), from the object store. */
  checkpoint: Uint8Array | null;
}

export type HostToRunner =
  | { type: 'start'; plan: ShardPlan; resume: ResumeState; backend?: string; memory?: DeviceMemory }
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
  | { type: 'evalDone'; losses: number[]; generation?: GenerationFigures };

export type GradSumMessage = Extract<HostToRunner, { type: 'gradSum' }>;
export type RoundMergedMessage = Extract<HostToRunner, { type: 'roundMerged' }>;

/** The runner's end of its channel to the agent (a MessagePort in a thread, IPC in a process). */
export interface RunnerPort {
  post(msg: RunnerToHost): void;
  onMessage(fn: (msg: HostToRunner) => void): void;
}
