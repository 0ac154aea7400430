// The dashboard's in-memory picture of the cluster, folded from the event stream: every job's view
// (shared/progress reducer) and every worker's last state. It also says which jobs changed since the
// last push, so the SSE feed sends only those.
import type { ChorusEvent } from '../../shared/nats/events.ts';
import { applyEvent, emptyJob, type JobView } from '../../shared/progress/state.ts';

export interface WorkerView {
  workerId: string;
  name: string;
  state: 'online' | 'dead' | 'left';
  devices: string[];
  reason: string;
  sinceMs: number;
}

/** Jobs kept in memory; the oldest finished ones are forgotten first. */
const MAX_JOBS = 200;

export class ClusterView {
  readonly jobs = new Map<string, JobView>();
  readonly workers = new Map<string, WorkerView>();
  private dirtyJobs = new Set<string>();
  private workersDirty = false;

  ingest(ev: ChorusEvent): void {
    if (ev.type === 'worker.state') {
      const d = ev.data;
      this.workers.set(d.workerId, {
        workerId: d.workerId,
        name: d.name,
        state: d.state,
        devices: d.devices,
        reason: d.reason,
        sinceMs: ev.timeMs,
      });
      this.workersDirty = true;
      return;
    }
    if (!ev.jobId) return;
    let job = this.jobs.get(ev.jobId);
    if (!job) {
      job = emptyJob(ev.jobId);
      this.jobs.set(ev.jobId, job);
      this.evict();
    }
    applyEvent(job, ev);
    this.dirtyJobs.add(ev.jobId);
  }

  workersAlive(): number {
    let n = 0;
    for (const w of this.workers.values()) if (w.state === 'online') n++;
    return n;
  }

  /** Job ids changed since the last call, and whether the worker list changed. */
  takeDirty(): { jobs: string[]; workers: boolean } {
    const out = { jobs: [...this.dirtyJobs], workers: this.workersDirty };
    this.dirtyJobs.clear();
    this.workersDirty = false;
    return out;
  }

  summaries(): JobSummary[] {
    return [...this.jobs.values()].map(summary).sort((a, b) => b.updatedMs - a.updatedMs);
  }

  private evict(): void {
    if (this.jobs.size <= MAX_JOBS) return;
    const finished = [...this.jobs.values()]
      .filter((j) => j.state === 'succeeded' || j.state === 'failed' || j.state === 'cancelled')
      .sort((a, b) => a.updatedMs - b.updatedMs);
    const victim = finished[0] ?? [...this.jobs.values()].sort((a, b) => a.updatedMs - b.updatedMs)[0];
    this.jobs.delete(victim.jobId);
  }
}

export interface JobSummary {
  jobId: string;
  name: string | null;
  state: string | null;
  reason: string;
  tasks: string[];
  shards: number;
  progress: number;
  updatedMs: number;
}

export function summary(job: JobView): JobSummary {
  let done = 0;
  let total = 0;
  for (const s of job.shards.values()) {
    done += s.step;
    total += s.totalSteps;
  }
  return {
    jobId: job.jobId,
    name: job.name,
    state: job.state,
    reason: job.reason,
    tasks: job.tasks.map((t) => t.name),
    shards: job.shards.size,
    progress: total ? done / total : 0,
    updatedMs: job.updatedMs,
  };
}

/** JSON-friendly copy of a job view (Maps become arrays/objects). */
export function jobJson(job: JobView): Record<string, unknown> {
  return {
    jobId: job.jobId,
    name: job.name,
    state: job.state,
    reason: job.reason,
    tasks: job.tasks,
    // In the spec's task order, then by replica.
    shards: [...job.shards.values()].sort(
      (a, b) =>
        taskIndex(job, a.task) - taskIndex(job, b.task) || a.task.localeCompare(b.task) || a.replica - b.replica,
    ),
    rounds: Object.fromEntries(job.rounds),
    layers: Object.fromEntries(job.layers),
    merge: job.merge,
    report: job.report,
    startedMs: job.startedMs,
    updatedMs: job.updatedMs,
  };
}

function taskIndex(job: JobView, task: string): number {
  const i = job.tasks.findIndex((t) => t.name === task);
  return i < 0 ? job.tasks.length : i;
}
