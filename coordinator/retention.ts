// `--artifacts-ttl`: a finished job's objects (its adapters, report, checkpoints, gradient sums —
// everything under jobs/<id>/) are deleted this long after the job ended. The job record stays in
// KV (with artifactsExpiredMs set) so `chorus job` still shows what ran and why the files are gone.
// A store-wide max_age would not do: it would also expire the checkpoints of jobs still running.
import { errorMessage } from '../shared/errors.ts';
import { isTerminal } from '../shared/nats/events.ts';
import type { ClusterState } from './state.ts';

export class ArtifactExpiry {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly state: ClusterState,
    private readonly ttlMs: number,
  ) {}

  start(): void {
    if (this.ttlMs <= 0) return;
    const every = Math.min(60_000, Math.max(250, Math.floor(this.ttlMs / 4)));
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = null));
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Deletes the objects of every job that ended more than the TTL ago. */
  async sweep(now = Date.now()): Promise<void> {
    const { state } = this;
    const due = [...state.jobs.values()].filter(
      (j) => isTerminal(j.state) && j.artifactsExpiredMs === undefined && j.updatedMs + this.ttlMs <= now,
    );
    if (due.length === 0) return;
    try {
      const objects = await state.store.retry('listing objects', () => state.store.objects.list());
      for (const job of due) {
        const prefix = `jobs/${job.id}/`;
        for (const o of objects) {
          if (!o.name.startsWith(prefix)) continue;
          await state.store.retry(`deleting ${o.name}`, () => state.store.objects.delete(o.name));
        }
        job.artifactsExpiredMs = now;
        await state.saveJob(job);
        state.log(`job ${job.id}: artifacts expired (--artifacts-ttl)`);
      }
    } catch (err) {
      state.log(`artifact expiry failed (retried on the next sweep): ${errorMessage(err)}`);
    }
  }
}
