// Typed payloads of the events the coordinator publishes to the JetStream events stream (and that
// WatchJob / `chorus watch` / the dashboard read back). One envelope, `type` picks the data shape.
// Subjects: <prefix>.job.<jobId>.<type> and <prefix>.worker.<workerId>.<type> (shared/nats/subjects.ts).
import { z } from 'zod';

export const JOB_STATES = ['queued', 'running', 'merging', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];
export const isTerminal = (s: string): boolean => (TERMINAL_STATES as readonly string[]).includes(s);

const shardRef = { shardId: z.string(), task: z.string(), replica: z.number().int() };

export const eventDataSchemas = {
  /** Job state change; `reason` says why (queued: what it waits for; failed: the error). */
  'job.state': z.object({ state: z.enum(JOB_STATES), previous: z.enum(JOB_STATES).nullable(), reason: z.string() }),
  /** Job accepted: its plan (tasks, replicas, steps). */
  'job.submitted': z.object({
    name: z.string(),
    tasks: z.array(z.object({ name: z.string(), replicas: z.number().int(), steps: z.number().int() })),
    shards: z.number().int(),
  }),
  /** A shard got a device (also after a move: attempt > 1). */
  'shard.assigned': z.object({
    ...shardRef,
    workerId: z.string(),
    workerName: z.string(),
    device: z.string(),
    attempt: z.number().int(),
    resumeStep: z.number().int(),
  }),
  'shard.started': z.object({ ...shardRef, workerId: z.string(), step: z.number().int() }),
  'shard.finished': z.object({
    ...shardRef,
    steps: z.number().int(),
    tokens: z.number(),
    finalLoss: z.number().nullable(),
    object: z.string(),
    sha256: z.string(),
  }),
  /** The shard lost its worker or crashed; it will be reassigned (`willRetry`) or fails the job. */
  'shard.failed': z.object({ ...shardRef, workerId: z.string(), error: z.string(), willRetry: z.boolean() }),
  /** Per optimiser step of one replica. */
  metrics: z.object({
    ...shardRef,
    step: z.number().int(),
    totalSteps: z.number().int(),
    loss: z.number(),
    lr: z.number(),
    p: z.number(),
    tokens: z.number(),
    tokensPerSec: z.number(),
    activeLayers: z.array(z.number().int()),
  }),
  /** One replica's adapter at the end of a round (sync: weights), in the object store. */
  'round.adapter_ready': z.object({
    ...shardRef,
    round: z.number().int(),
    step: z.number().int(),
    object: z.string(),
    sha256: z.string(),
    bytes: z.number(),
  }),
  /** The reconciled adapter of a round; replicas continue from it. */
  'round.merged': z.object({
    task: z.string(),
    round: z.number().int(),
    step: z.number().int(),
    method: z.string(),
    object: z.string(),
    sha256: z.string(),
    bytes: z.number(),
  }),
  /** Per-layer CoTo figures of a task adapter (aggregated over replicas). */
  'coto.layers': z.object({
    task: z.string(),
    activationCounts: z.array(z.number()),
    meanLossActive: z.array(z.number().nullable()),
    meanLossInactive: z.array(z.number().nullable()),
    shapley: z.array(z.number()).nullable(),
    /** Greedy-generation scores of the task adapter (training.eval_generate); absent when not asked for. */
    generation: z.object({ exactMatch: z.number(), editSimilarity: z.number(), examples: z.number() }).optional(),
  }),
  /** Final merge of the task adapters (or `method: "none"`). */
  'merge.done': z.object({ method: z.string(), object: z.string().nullable(), sha256: z.string().nullable() }),
  /** Result report (JSON) stored in the object store. */
  'report.ready': z.object({ object: z.string(), artifacts: z.array(z.string()) }),
  /** Worker lifecycle. */
  'worker.state': z.object({
    workerId: z.string(),
    name: z.string(),
    state: z.enum(['online', 'dead', 'left']),
    devices: z.array(z.string()),
    reason: z.string(),
  }),
} as const;

export type EventType = keyof typeof eventDataSchemas;
export type EventData<T extends EventType> = z.infer<(typeof eventDataSchemas)[T]>;

/** What travels in each NATS message (JSON) — and, with `seq`, what WatchJob returns. */
export type ChorusEvent = {
  [T in EventType]: { type: T; jobId: string | null; timeMs: number; data: EventData<T>; seq?: number };
}[EventType];

export const EVENT_TYPES = Object.keys(eventDataSchemas) as EventType[];

export function makeEvent<T extends EventType>(type: T, jobId: string | null, data: EventData<T>): ChorusEvent {
  return { type, jobId, timeMs: Date.now(), data } as ChorusEvent;
}

/** Validates an event read off the wire; unknown types are rejected so consumers never guess. */
export function parseEvent(json: string | Uint8Array, seq?: number): ChorusEvent {
  const text = typeof json === 'string' ? json : new TextDecoder().decode(json);
  const raw = JSON.parse(text) as { type?: string; jobId?: string | null; timeMs?: number; data?: unknown };
  const schema = eventDataSchemas[raw.type as EventType];
  if (!schema) throw new Error(`unknown event type ${JSON.stringify(raw.type)}`);
  const data = schema.parse(raw.data);
  return {
    type: raw.type,
    jobId: raw.jobId ?? null,
    timeMs: raw.timeMs ?? 0,
    data,
    ...(seq !== undefined ? { seq } : {}),
  } as ChorusEvent;
}

/** The gRPC JobEvent form (data as JSON text) → a validated event. */
export function eventFromWire(ev: {
  seq: number;
  type: string;
  jobId: string;
  timeMs: number;
  data: string;
}): ChorusEvent {
  return parseEvent(
    JSON.stringify({ type: ev.type, jobId: ev.jobId || null, timeMs: ev.timeMs, data: JSON.parse(ev.data) }),
    ev.seq,
  );
}
