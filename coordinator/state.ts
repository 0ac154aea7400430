// What the coordinator knows, and the one way each piece of it changes: jobs and workers in memory,
// mirrored to JetStream KV (saves are chained per job, so KV never goes back in time), events
// published in the order things happened, and the device bookkeeping every part shares.
import { ChorusError, errorMessage, Unavailable } from '../shared/errors.ts';
import type { CoordinatorMessage } from '../shared/gen/chorus/v1/worker.ts';
import { isTerminal, makeEvent, type EventData, type EventType, type JobState } from '../shared/nats/events.ts';
import { jobIdOfShard } from '../shared/shard/plan.ts';
import type { NatsStore } from './nats-store.ts';
import type { FreeDevice } from './placement.ts';
import { RetryPolicy, type RetryOptions } from './retries.ts';
import { jobFromStored, storedJob, type JobRecord, type ShardRecord, type WorkerRecord } from './types.ts';

export interface CoordinatorOptions {
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** What is retried how often (retries.ts): a shard's own failures are budgeted, lost workers are not. */
  retries: RetryOptions;
  log: (line: string) => void;
}

/** The coordinator's end of one worker's stream. */
export interface WorkerLink {
  send(msg: CoordinatorMessage): void;
  close(): void;
}

export interface LiveWorker {
  record: WorkerRecord;
  /** null while the worker's stream is down (it may come back before the watchdog gives up on it). */
  link: WorkerLink | null;
  /** device → the shard (or evaluation request) using it */
  busy: Map<string, string>;
}

export class ClusterState {
  readonly jobs = new Map<string, JobRecord>();
  readonly workers = new Map<string, LiveWorker>();
  /** worker id → SHA-256 of its secret, for every id ever issued (live or not): ids cannot be taken over. */
  readonly workerSecrets = new Map<string, string>();
  private readonly saveChains = new Map<string, Promise<void>>();
  private pubChain: Promise<unknown> = Promise.resolve();
  private readonly trainingEndHooks: Array<(job: JobRecord) => void> = [];
  private scheduler: () => void = () => {};
  readonly retries: RetryPolicy;

  constructor(
    readonly store: NatsStore,
    readonly opts: CoordinatorOptions,
  ) {
    this.retries = new RetryPolicy(opts.retries);
  }

  get log(): (line: string) => void {
    return this.opts.log;
  }

  /** Jobs and online workers from KV (a restart). A job that cannot be read is failed, not dropped. */
  async load(): Promise<void> {
    for (const stored of await this.store.allJson<Parameters<typeof jobFromStored>[0]>(this.store.jobs)) {
      try {
        this.jobs.set(stored.id, jobFromStored(stored));
      } catch (err) {
        this.log(`job ${stored.id}: cannot be read back (${errorMessage(err)}); it is left as it was stored`);
      }
    }
    const now = Date.now();
    for (const w of await this.store.allJson<WorkerRecord>(this.store.workers)) {
      if (w.secretSha256) this.workerSecrets.set(w.id, w.secretSha256);
      if (w.state !== 'online') continue;
      // Workers get a few heartbeat timeouts to reconnect (their backoff) before their shards move.
      const grace = now + 2 * this.opts.heartbeatTimeoutMs;
      this.workers.set(w.id, { record: { ...w, lastHeartbeatMs: grace }, link: null, busy: new Map() });
    }
  }

  /** Waits for every pending save and publish. */
  async flush(): Promise<void> {
    await Promise.all([...this.saveChains.values()]);
    await this.pubChain.catch(() => undefined);
  }

  publish<T extends EventType>(type: T, jobId: string | null, data: EventData<T>, msgId?: string): Promise<unknown> {
    const subject = jobId
      ? this.store.names.jobEvent(jobId, type)
      : this.store.names.workerEvent((data as { workerId: string }).workerId, type);
    const event = makeEvent(type, jobId, data);
    // One chain keeps events in the order things happened.
    this.pubChain = this.pubChain
      .then(() => this.store.publish(event, subject, msgId))
      .catch((err) => this.log(`publish ${type} failed: ${errorMessage(err)}`));
    return this.pubChain;
  }

  saveJob(job: JobRecord): Promise<void> {
    job.updatedMs = Date.now();
    const snapshot = storedJob(job);
    const prev = this.saveChains.get(job.id) ?? Promise.resolve();
    const next = prev
      .then(() => this.store.putText(this.store.jobs, job.id, snapshot))
      .catch((err) => this.log(`saving job ${job.id} failed: ${errorMessage(err)}`));
    this.saveChains.set(job.id, next);
    return next;
  }

  /**
   * A new job's first save, which must succeed (its failure is the submitter's error, not a log
   * line). Its record grows while it runs (progress, artifacts, metrics), so it must also start
   * well inside the store's message limit.
   */
  async saveNewJob(job: JobRecord): Promise<void> {
    job.updatedMs = Date.now();
    const snapshot = storedJob(job);
    const limit = Math.floor(this.store.maxRecordBytes / 2);
    const size = Buffer.byteLength(snapshot, 'utf8');
    if (size > limit) {
      throw new ChorusError(
        `spec: the job's record would be ${size} bytes, more than the ${limit} bytes it may start with ` +
          `(half the store's ${this.store.maxRecordBytes}-byte message limit); use fewer tasks or shorter paths`,
      );
    }
    try {
      await this.store.jobs.put(job.id, snapshot);
    } catch (err) {
      throw new Unavailable(`the job could not be stored (${errorMessage(err)}); it was not submitted`);
    }
  }

  async saveWorker(w: WorkerRecord): Promise<void> {
    await this.store
      .putJson(this.store.workers, w.id, w)
      .catch((err) => this.log(`saving worker failed: ${errorMessage(err)}`));
  }

  async setState(job: JobRecord, state: JobState, reason: string): Promise<void> {
    if (job.state === state && job.reason === reason) return;
    const previous = job.state;
    job.state = state;
    job.reason = reason;
    await this.saveJob(job);
    // msgID: a coordinator restarting in the middle re-publishes nothing twice.
    await this.publish('job.state', job.id, { state, previous, reason }, `${job.id}.state.${previous}.${state}`);
  }

  /** Called when a job's training ends, however it ends (its shards all finished, or it failed or was cancelled). */
  onTrainingEnd(fn: (job: JobRecord) => void): void {
    this.trainingEndHooks.push(fn);
  }

  trainingEnded(job: JobRecord): void {
    for (const fn of this.trainingEndHooks) fn(job);
  }

  /** Fails or cancels a job: its running shards are told to stop and their devices freed. */
  async endJob(job: JobRecord, state: 'failed' | 'cancelled', reason: string, shardReason: string): Promise<void> {
    if (isTerminal(job.state)) return;
    for (const s of job.shards) {
      if (s.state === 'assigned' || s.state === 'running') {
        this.send(s.workerId, { kind: { $case: 'cancel', value: { shardId: s.id, reason: shardReason } } });
        this.freeDevice(s);
        s.state = 'failed';
      }
    }
    this.trainingEnded(job);
    this.retries.forgetJob(
      job.id,
      job.shards.map((s) => s.id),
    );
    await this.setState(job, state, reason);
    this.scheduleSoon();
  }

  /** The scheduling pass, registered by the scheduler (state cannot import it: it imports state). */
  setScheduler(run: () => void): void {
    this.scheduler = run;
  }

  scheduleSoon(): void {
    this.scheduler();
  }

  findShard(shardId: string): { job: JobRecord | undefined; shard: ShardRecord | undefined } {
    const job = this.jobs.get(jobIdOfShard(shardId));
    return { job, shard: job?.shards.find((s) => s.id === shardId) };
  }

  /** The shard a report is about, if the report comes from its current placement. */
  liveShard(workerId: string, shardId: string, attempt: number): { job: JobRecord; shard: ShardRecord } | null {
    const { job, shard } = this.findShard(shardId);
    if (!job || !shard || isTerminal(job.state) || shard.workerId !== workerId || attempt !== shard.attempts)
      return null;
    return { job, shard };
  }

  send(workerId: string, msg: CoordinatorMessage): void {
    this.workers.get(workerId)?.link?.send(msg);
  }

  freeDevices(): FreeDevice[] {
    const out: FreeDevice[] = [];
    for (const w of this.workers.values()) {
      if (!w.link || this.retries.isQuarantined(w.record.name)) continue;
      for (const d of w.record.devices) if (!w.busy.has(d.id)) out.push({ workerId: w.record.id, device: d.id });
    }
    return out;
  }

  /** Every device of a connected worker, busy or not. */
  liveDevices(): FreeDevice[] {
    const out: FreeDevice[] = [];
    for (const w of this.workers.values()) {
      if (w.link) for (const d of w.record.devices) out.push({ workerId: w.record.id, device: d.id });
    }
    return out;
  }

  freeDevice(shard: ShardRecord): void {
    const w = this.workers.get(shard.workerId);
    if (w && w.busy.get(shard.device) === shard.id) w.busy.delete(shard.device);
  }

  /** Back to pending: the scheduler will place it again (resuming from its checkpoint). */
  releaseShard(shard: ShardRecord): void {
    this.freeDevice(shard);
    shard.state = 'pending';
    shard.workerId = '';
    shard.device = '';
  }
}
