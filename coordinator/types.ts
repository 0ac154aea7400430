// Records the coordinator keeps in JetStream KV (JSON). Everything needed to carry on after a
// restart is in here; what is only in memory (gradient parts in flight) is re-sent by workers.
import { LayerActivity } from '../shared/coto/activity.ts';
import { parseJobSpec } from '../shared/job/parse.ts';
import type { JobSpec } from '../shared/job/types.ts';
import type { JobState } from '../shared/nats/events.ts';

type ShardState = 'pending' | 'assigned' | 'running' | 'finished' | 'failed';

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
  /** Placements so far (every report echoes the current one). */
  attempts: number;
  /** Failures of the shard's own run (runner errors, bad data), charged to its budget; lost workers are not. */
  failures: number;
  /** Last checkpoint in the object store. */
  checkpoint: { step: number; object: string } | null;
  final: { object: string; sha256: string } | null;
  /**
   * Highest step whose CoTo activity was recorded: a shard that moved replays steps from its
   * checkpoint, and those were counted before the move (absent in records written before it existed).
   */
  recorded?: number;
}

interface TaskMetrics {
  steps: number;
  tokens: number;
  finalLoss: number | null;
  /** v(no adapters) and v(all adapters) of the Shapley game, so readers can check Σφ = the gain. */
  coalitionLoss?: { noAdapters: number; allAdapters: number };
  shapleyNote?: string;
  /** Greedy-generation scores of the task adapter on its eval set (training.eval_generate). */
  generation?: { exactMatch: number; editSimilarity: number; examples: number };
  /** Why the generation scores are missing, when they were asked for on their own (coto.shapley_samples 0). */
  generationNote?: string;
}

export interface JobRecord {
  id: string;
  name: string;
  state: JobState;
  reason: string;
  /** The spec in its wire form (shared/job/wire.ts): what workers receive and what a restart parses. */
  specText: string;
  /** specText parsed; not stored (a restart parses specText again). */
  spec: JobSpec;
  /** The base model's shape, when the client could read it: shards are placed by memory. */
  model?: ModelRecord;
  createdMs: number;
  updatedMs: number;
  shards: ShardRecord[];
  artifacts: string[];
  /** Hex SHA-256 of each artifact as the coordinator wrote it (absent in records of older coordinators). */
  artifactSha256?: Record<string, string>;
  /** When --artifacts-ttl deleted this finished job's objects (retention.ts). */
  artifactsExpiredMs?: number;
  /** Last merged round per task (sync: weights). */
  rounds: Record<string, { round: number; step: number; object: string; sha256: string }>;
  /** Per task: what CoTo did to each layer, over all replicas (sized on the first report). */
  layers: Record<string, LayerActivity>;
  metrics: Record<string, TaskMetrics>;
  shapley: Record<string, number[]>;
  /** Per task: gradient totals below this step are deleted from the object store (sync: gradients). */
  gradFloor?: Record<string, number>;
}

export interface DeviceRecord {
  id: string;
  kind: string;
  description: string;
  /** What a shard may use there (0: unknown). */
  memoryBytes: number;
  /** The runners' tensor engine ("" = the best available). */
  engine: string;
}

/** The base model's shape as the submitting client read it: what placement plans with. */
export interface ModelRecord {
  configJson: string;
  weightBytes: number;
}

export interface WorkerRecord {
  id: string;
  name: string;
  state: 'online' | 'dead' | 'left';
  devices: DeviceRecord[];
  lastHeartbeatMs: number;
  /** SHA-256 of the secret issued with the id at its first registration (workers.ts). */
  secretSha256?: string;
}

/** A job as stored in KV: everything but the parsed spec (LayerActivity serialises itself). */
export function storedJob(job: JobRecord): string {
  const { spec: _derived, ...stored } = job;
  return JSON.stringify(stored);
}

export function jobFromStored(
  json: Omit<JobRecord, 'spec' | 'layers'> & { layers: Record<string, unknown> },
): JobRecord {
  const layers: Record<string, LayerActivity> = {};
  for (const [task, l] of Object.entries(json.layers ?? {}))
    layers[task] = LayerActivity.fromJSON(l, `job ${json.id}: layers of ${task}`);
  // Records written before failures were counted apart from placements start at none.
  const shards = json.shards.map((s) => ({ ...s, failures: s.failures ?? 0 }));
  return { ...json, shards, spec: parseJobSpec(json.specText, { sourcePath: `job ${json.id}` }), layers };
}
