// What a watcher knows about a job, folded from its event stream. Pure: the terminal renderer, the
// dashboard and tests all read the same reducer, so they agree on what the job is doing.
import type { ChorusEvent, JobState } from '../nats/events.ts';

type ShardStatus = 'waiting' | 'assigned' | 'running' | 'finished' | 'failed';

export interface ShardView {
  shardId: string;
  task: string;
  replica: number;
  status: ShardStatus;
  worker: string | null;
  device: string | null;
  step: number;
  totalSteps: number;
  loss: number | null;
  p: number | null;
  lr: number | null;
  tokensPerSec: number | null;
  tokens: number;
  attempt: number;
  /** (step, loss, p) samples for curves; thinned to at most MAX_POINTS. */
  curve: Array<[number, number, number]>;
}

interface TaskLayers {
  activationCounts: number[];
  meanLossActive: Array<number | null>;
  meanLossInactive: Array<number | null>;
  shapley: number[] | null;
}

export interface JobView {
  jobId: string;
  name: string | null;
  state: JobState | null;
  reason: string;
  tasks: Array<{ name: string; replicas: number; steps: number }>;
  shards: Map<string, ShardView>;
  rounds: Map<string, number>;
  layers: Map<string, TaskLayers>;
  merge: { method: string; object: string | null } | null;
  report: { object: string; artifacts: string[] } | null;
  startedMs: number | null;
  updatedMs: number;
}

export const MAX_POINTS = 400;

export function emptyJob(jobId: string): JobView {
  return {
    jobId,
    name: null,
    state: null,
    reason: '',
    tasks: [],
    shards: new Map(),
    rounds: new Map(),
    layers: new Map(),
    merge: null,
    report: null,
    startedMs: null,
    updatedMs: 0,
  };
}

function shardOf(job: JobView, d: { shardId: string; task: string; replica: number }): ShardView {
  let s = job.shards.get(d.shardId);
  if (!s) {
    const steps = job.tasks.find((t) => t.name === d.task)?.steps ?? 0;
    s = {
      shardId: d.shardId,
      task: d.task,
      replica: d.replica,
      status: 'waiting',
      worker: null,
      device: null,
      step: 0,
      totalSteps: steps,
      loss: null,
      p: null,
      lr: null,
      tokensPerSec: null,
      tokens: 0,
      attempt: 0,
      curve: [],
    };
    job.shards.set(d.shardId, s);
  }
  return s;
}

/** Keeps every other point once the curve is full, so long runs keep their shape in bounded memory. */
function pushPoint(curve: ShardView['curve'], point: [number, number, number]): void {
  const last = curve[curve.length - 1];
  if (last && last[0] >= point[0]) {
    // a replayed or resumed step: drop what came after it
    while (curve.length && curve[curve.length - 1][0] >= point[0]) curve.pop();
  }
  curve.push(point);
  if (curve.length > MAX_POINTS) {
    const kept = curve.filter((_, i) => i % 2 === 0 || i === curve.length - 1);
    curve.splice(0, curve.length, ...kept);
  }
}

/** Folds one event into the view (events of other jobs and worker events are ignored here). */
export function applyEvent(job: JobView, ev: ChorusEvent): JobView {
  if (ev.jobId !== job.jobId) return job;
  job.updatedMs = ev.timeMs;
  switch (ev.type) {
    case 'job.submitted':
      job.name = ev.data.name;
      job.tasks = ev.data.tasks;
      for (const s of job.shards.values())
        if (!s.totalSteps) s.totalSteps = job.tasks.find((t) => t.name === s.task)?.steps ?? 0;
      break;
    case 'job.state':
      job.state = ev.data.state;
      job.reason = ev.data.reason;
      if (ev.data.state === 'running' && job.startedMs === null) job.startedMs = ev.timeMs;
      break;
    case 'shard.assigned': {
      const s = shardOf(job, ev.data);
      s.status = 'assigned';
      s.worker = ev.data.workerName || ev.data.workerId;
      s.device = ev.data.device;
      s.attempt = ev.data.attempt;
      s.step = Math.max(ev.data.resumeStep, 0);
      break;
    }
    case 'shard.started': {
      const s = shardOf(job, ev.data);
      s.status = 'running';
      s.step = ev.data.step;
      break;
    }
    case 'metrics': {
      const s = shardOf(job, ev.data);
      if (s.status !== 'finished') s.status = 'running';
      s.step = ev.data.step;
      s.totalSteps = ev.data.totalSteps;
      s.loss = ev.data.loss;
      s.p = ev.data.p;
      s.lr = ev.data.lr;
      s.tokensPerSec = ev.data.tokensPerSec;
      s.tokens = ev.data.tokens;
      pushPoint(s.curve, [ev.data.step, ev.data.loss, ev.data.p]);
      break;
    }
    case 'shard.finished': {
      const s = shardOf(job, ev.data);
      s.status = 'finished';
      s.step = ev.data.steps;
      if (ev.data.finalLoss !== null) s.loss = ev.data.finalLoss;
      s.tokens = ev.data.tokens;
      break;
    }
    case 'shard.failed': {
      const s = shardOf(job, ev.data);
      s.status = ev.data.willRetry ? 'waiting' : 'failed';
      s.worker = null;
      break;
    }
    case 'round.merged':
      job.rounds.set(ev.data.task, Math.max(job.rounds.get(ev.data.task) ?? 0, ev.data.round));
      break;
    case 'coto.layers':
      job.layers.set(ev.data.task, {
        activationCounts: ev.data.activationCounts,
        meanLossActive: ev.data.meanLossActive,
        meanLossInactive: ev.data.meanLossInactive,
        shapley: ev.data.shapley,
      });
      break;
    case 'merge.done':
      job.merge = { method: ev.data.method, object: ev.data.object };
      break;
    case 'report.ready':
      job.report = { object: ev.data.object, artifacts: ev.data.artifacts };
      break;
    default:
      break;
  }
  return job;
}

/** One human line for the events that change what the job is doing (null for the rest). */
export function describeEvent(ev: ChorusEvent): string | null {
  const d = ev.data as Record<string, unknown>;
  switch (ev.type) {
    case 'job.submitted':
      return `job ${ev.jobId} submitted: ${ev.data.tasks.map((t) => `${t.name}×${t.replicas}`).join(', ')} (${ev.data.shards} shards)`;
    case 'job.state':
      return `job ${ev.jobId} ${ev.data.state}${ev.data.reason ? `: ${ev.data.reason}` : ''}`;
    case 'shard.assigned':
      return `${ev.data.task}/r${ev.data.replica} → ${ev.data.workerName || ev.data.workerId} ${ev.data.device}${ev.data.attempt > 1 ? ` (attempt ${ev.data.attempt}, from step ${ev.data.resumeStep})` : ''}`;
    case 'shard.failed':
      return `${ev.data.task}/r${ev.data.replica} lost: ${ev.data.error}${ev.data.willRetry ? ' (will move)' : ''}`;
    case 'shard.finished':
      return `${ev.data.task}/r${ev.data.replica} finished ${ev.data.steps} steps, loss ${fmt(ev.data.finalLoss, 4)}`;
    case 'round.merged':
      return `${ev.data.task} round ${ev.data.round} merged at step ${ev.data.step} (${ev.data.method})`;
    case 'merge.done':
      return `final merge: ${ev.data.method}`;
    case 'worker.state':
      return `worker ${ev.data.name} ${ev.data.state}${ev.data.reason ? `: ${ev.data.reason}` : ''}`;
    case 'report.ready':
      return `report ready (${ev.data.artifacts.length} artifacts)`;
    default:
      void d;
      return null;
  }
}

export function fmt(v: number | null | undefined, digits: number): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

export function shardLabel(s: { task: string; replica: number }): string {
  return `${s.task}/r${s.replica}`;
}
