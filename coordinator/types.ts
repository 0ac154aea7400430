// Records the coordinator keeps in JetStream KV (JSON). Everything needed to carry on after a
// restart is in here; what is only in memory (gradient parts in flight) is re-sent by workers.
import type { JobState } from '../shared/nats/events.ts';
import type { JobSpec } from '../shared/spec/job-spec.ts';

export type ShardState = 'pending' | 'assigned' | 'running' | 'finished' | 'failed';

export interface ShardRecord {
  id: string;
  task: string;
  taskIndex: number;
  replica: number;
  replicas: number;
  state: ShardState;
  workerId: string;
  device: string;
  step: number;
  totalSteps: number;
  loss: number;
  tokens: number;
  attempts: number;
  /** Last checkpoint in the object store. */
  checkpoint: { step: number; object: string } | null;
  final: { object: string; sha256: string } | null;
}

export interface LayerStats {
  /** Optimiser steps in which the layer's adapters were on, summed over replicas. */
  activationCounts: number[];
  lossActiveSum: number[];
  lossActiveN: number[];
  lossInactiveSum: number[];
  lossInactiveN: number[];
}

export interface JobRecord {
  id: string;
  name: string;
  state: JobState;
  reason: string;
  specText: string;
  spec: JobSpec;
  createdMs: number;
  updatedMs: number;
  shards: ShardRecord[];
  artifacts: string[];
  /** Last merged round per task (sync: weights). */
  rounds: Record<string, { round: number; step: number; object: string; sha256: string }>;
  layers: Record<string, LayerStats>;
  /** Per-task final metrics for the report. */
  metrics: Record<string, { steps: number; tokens: number; finalLoss: number | null; evalLoss?: number | null }>;
  shapley: Record<string, number[]>;
  /** Per task: gradient totals below this step are deleted from the object store (sync: gradients). */
  gradFloor?: Record<string, number>;
}

export interface WorkerRecord {
  id: string;
  name: string;
  state: 'online' | 'dead' | 'left';
  devices: { id: string; kind: string; description: string; memoryBytes: number }[];
  lastHeartbeatMs: number;
}
