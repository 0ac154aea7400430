// NATS names are an API (documented in docs/CLUSTER.md). Every name derives from one prefix so
// that several clusters — or several test runs — share a NATS server without seeing each other.
import { ChorusError } from '../errors.ts';

export const DEFAULT_PREFIX = 'chorus';

export interface NatsNames {
  prefix: string;
  /** JetStream stream holding every event (job and worker), replayable. */
  eventsStream: string;
  /** KV bucket: job id → JobRecord JSON. */
  jobsBucket: string;
  /** KV bucket: worker id → WorkerRecord JSON. */
  workersBucket: string;
  /** Object store: adapters, round results, checkpoints, uploads, reports. */
  objectStore: string;
  /** Subject filter of the events stream. */
  eventsFilter: string;
  /** Subject of one job's events of the given type, e.g. chorus.job.<id>.metrics. */
  jobEvent(jobId: string, type: string): string;
  /** Filter matching every event of one job. */
  jobFilter(jobId: string): string;
  /** Subject of one worker's state events. */
  workerEvent(workerId: string, type: string): string;
}

export function natsNames(prefix: string = DEFAULT_PREFIX): NatsNames {
  // Stream/bucket names and subject tokens may not contain '.', '*', '>' or spaces.
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(prefix)) {
    throw new ChorusError(`NATS prefix "${prefix}" must be 1-32 letters, digits, '-' or '_'`);
  }
  const up = prefix.toUpperCase();
  return {
    prefix,
    eventsStream: `${up}_EVENTS`,
    jobsBucket: `${prefix}_jobs`,
    workersBucket: `${prefix}_workers`,
    objectStore: `${prefix}_artifacts`,
    eventsFilter: `${prefix}.>`,
    jobEvent: (jobId, type) => `${prefix}.job.${token(jobId)}.${type}`,
    jobFilter: (jobId) => `${prefix}.job.${token(jobId)}.>`,
    workerEvent: (workerId, type) => `${prefix}.worker.${token(workerId)}.${type}`,
  };
}

function token(id: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new ChorusError(`id "${id}" is not a valid NATS subject token`);
  return id;
}

/** Deterministic object names: writing the same round twice overwrites one object (idempotent merges). */
export const objectNames = {
  replicaRound: (jobId: string, task: string, replica: number, round: number) =>
    `jobs/${jobId}/tasks/${task}/rounds/${round}/replica-${replica}.safetensors`,
  roundMerged: (jobId: string, task: string, round: number) =>
    `jobs/${jobId}/tasks/${task}/rounds/${round}/merged.safetensors`,
  gradTotal: (jobId: string, task: string, step: number) => `jobs/${jobId}/tasks/${task}/grads/${step}.bin`,
  checkpoint: (jobId: string, shardId: string) => `jobs/${jobId}/checkpoints/${shardId}.safetensors`,
  shardFinal: (jobId: string, task: string, replica: number) =>
    `jobs/${jobId}/tasks/${task}/final/replica-${replica}.safetensors`,
  taskAdapter: (jobId: string, task: string) => `jobs/${jobId}/result/${task}/adapter_model.safetensors`,
  taskConfig: (jobId: string, task: string) => `jobs/${jobId}/result/${task}/adapter_config.json`,
  mergedAdapter: (jobId: string) => `jobs/${jobId}/result/merged/adapter_model.safetensors`,
  mergedConfig: (jobId: string) => `jobs/${jobId}/result/merged/adapter_config.json`,
  report: (jobId: string) => `jobs/${jobId}/result/report.json`,
  upload: (sha256: string, name: string) => `uploads/${sha256}/${name}`,
};
