// How the coordinator tells faults apart when a shard stops. A failure of the shard's own run (its
// runner threw, its loss went non-finite, its data is bad) is charged to the shard's attempt
// budget: running it again will likely fail the same way. Losing the worker under it (dead, left,
// replaced) is the cluster's fault, not the shard's: it is retried without limit while the job
// makes progress, with a backoff that grows while the shard keeps losing workers before taking a
// step, and capped by a job-level no-progress limit. A worker that keeps losing the shards it is
// given before they move is "flapping": it is named, and gets no shards for a while.

export interface RetryOptions {
  /** Failures of a shard's own run before the job fails. */
  maxFailures: number;
  /** A job whose shards keep losing their workers fails after this long without a step. */
  noProgressMs: number;
  /** Backoff of a shard's re-placement after its 2nd, 3rd, … loss in a row without progress. */
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Losses in a row on one worker (by name) of shards that made no progress there. */
  flapLimit: number;
  /** How long a flapping worker gets no shards. */
  quarantineMs: number;
}

export const DEFAULT_RETRIES: RetryOptions = {
  maxFailures: 4,
  noProgressMs: 10 * 60_000,
  backoffBaseMs: 500,
  backoffCapMs: 15_000,
  flapLimit: 3,
  quarantineMs: 5 * 60_000,
};

export class RetryPolicy {
  /** shard → losses in a row without a step in between */
  private readonly streak = new Map<string, number>();
  private readonly retryAt = new Map<string, number>();
  /** shard → it took a step on its current placement */
  private readonly movedOnPlacement = new Map<string, boolean>();
  /** job → last time any of its shards took a step (or it was placed) */
  private readonly progressMs = new Map<string, number>();
  /** worker name → losses in a row of shards that made no progress there */
  private readonly flaps = new Map<string, number>();
  private readonly quarantined = new Map<string, number>();

  constructor(readonly opts: RetryOptions) {}

  placed(jobId: string, shardId: string, now = Date.now()): void {
    this.movedOnPlacement.set(shardId, false);
    this.retryAt.delete(shardId);
    if (!this.progressMs.has(jobId)) this.progressMs.set(jobId, now);
  }

  progressed(jobId: string, shardId: string, workerName: string, now = Date.now()): void {
    this.progressMs.set(jobId, now);
    this.streak.delete(shardId);
    this.movedOnPlacement.set(shardId, true);
    this.flaps.delete(workerName);
  }

  /**
   * The shard lost its worker. Returns the flapping worker's name when this loss makes it one
   * (it is then quarantined).
   */
  workerLost(shardId: string, workerName: string, now = Date.now()): string | null {
    const streak = (this.streak.get(shardId) ?? 0) + 1;
    this.streak.set(shardId, streak);
    // The first loss is re-placed at once (a worker dies, another takes over); a shard that keeps
    // losing workers before its first step waits longer each time.
    if (streak > 1)
      this.retryAt.set(shardId, now + Math.min(this.opts.backoffCapMs, this.opts.backoffBaseMs * 2 ** (streak - 2)));
    const moved = this.movedOnPlacement.get(shardId) ?? false;
    this.movedOnPlacement.delete(shardId);
    if (moved || !workerName) return null;
    const flaps = (this.flaps.get(workerName) ?? 0) + 1;
    this.flaps.set(workerName, flaps);
    if (flaps < this.opts.flapLimit) return null;
    this.flaps.delete(workerName);
    this.quarantined.set(workerName, now + this.opts.quarantineMs);
    return workerName;
  }

  /** A loss the shard itself caused: re-placed at once, charged to its budget by the caller. */
  runFailed(shardId: string): void {
    this.movedOnPlacement.delete(shardId);
    this.retryAt.delete(shardId);
  }

  /** May this pending shard be placed now? */
  ready(shardId: string, now = Date.now()): boolean {
    return (this.retryAt.get(shardId) ?? 0) <= now;
  }

  /** The earliest future time a backed-off shard becomes ready, if any. */
  nextReadyMs(now = Date.now()): number | null {
    let next: number | null = null;
    for (const t of this.retryAt.values()) if (t > now && (next === null || t < next)) next = t;
    return next;
  }

  isQuarantined(workerName: string, now = Date.now()): boolean {
    const until = this.quarantined.get(workerName);
    if (until === undefined) return false;
    if (until > now) return true;
    this.quarantined.delete(workerName);
    return false;
  }

  quarantinedNames(now = Date.now()): string[] {
    return [...this.quarantined.keys()].filter((n) => this.isQuarantined(n, now));
  }

  /**
   * Milliseconds the job has gone without a step while one of its shards was losing workers, when
   * that exceeds the limit; null otherwise.
   */
  stalledFor(jobId: string, shardIds: string[], now = Date.now()): number | null {
    if (!shardIds.some((id) => (this.streak.get(id) ?? 0) > 0)) return null;
    const since = now - (this.progressMs.get(jobId) ?? now);
    return since > this.opts.noProgressMs ? since : null;
  }

  forgetJob(jobId: string, shardIds: string[]): void {
    this.progressMs.delete(jobId);
    for (const id of shardIds) {
      this.streak.delete(id);
      this.retryAt.delete(id);
      this.movedOnPlacement.delete(id);
    }
  }
}
