// The coordinator's brain: jobs, workers, scheduling, synchronisation and the end of a job. The
// gRPC layer (server.ts) turns calls into method calls here; all state goes to JetStream (KV,
// stream, object store) so a restarted coordinator carries on.
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { isTerminal, makeEvent, type EventData, type EventType, type JobState } from '../shared/nats/events.ts';
import { objectNames } from '../shared/nats/subjects.ts';
import { parseJobSpec, resolveTask } from '../shared/spec/job-spec.ts';
import { cotoMaskForStep } from '../shared/coto/schedule.ts';
import type { CoordinatorMessage, WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import type { Device } from '../shared/gen/chorus/v1/jobs.ts';
import { roundObject } from '../worker/protocol.ts';
import { NatsStore } from './nats-store.ts';
import { addLayerStep, emptyLayerStats, newJobId, planJob, shardPlan } from './plan.ts';
import { schedule, type FreeDevice, type SchedJob } from './scheduler.ts';
import { GradientAggregator, decodeTotal, encodeTotal, type GradTotal } from './sync.ts';
import type { JobRecord, ShardRecord, WorkerRecord } from './types.ts';
import { finalizeJob, reconcileRound } from './finalize.ts';

export interface CoordinatorOptions {
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Retries of one shard (worker deaths, runner crashes) before the job fails. */
  maxAttempts: number;
  log: (line: string) => void;
}

export interface WorkerLink {
  send(msg: CoordinatorMessage): void;
  close(): void;
}

interface LiveWorker {
  record: WorkerRecord;
  link: WorkerLink | null;
  /** device → shard id */
  busy: Map<string, string>;
}

export class Coordinator {
  readonly jobs = new Map<string, JobRecord>();
  readonly workers = new Map<string, LiveWorker>();
  private readonly grads = new Map<string, GradientAggregator>();
  private readonly roundParts = new Map<string, Map<number, { object: string; sha256: string; step: number }>>();
  private readonly roundsInFlight = new Set<string>();
  private readonly finalizing = new Set<string>();
  private readonly saveChains = new Map<string, Promise<void>>();
  private pubChain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private scheduling = false;
  private stopped = false;
  readonly evals = new Map<
    string,
    { resolve: (losses: number[]) => void; reject: (e: Error) => void; workerId: string; device: string; count: number }
  >();

  constructor(
    readonly store: NatsStore,
    readonly opts: CoordinatorOptions,
  ) {}

  /** Loads jobs and workers from KV (restart) and starts the heartbeat watchdog. */
  async start(): Promise<void> {
    for (const job of await this.store.allJson<JobRecord>(this.store.jobs)) this.jobs.set(job.id, job);
    const now = Date.now();
    for (const w of await this.store.allJson<WorkerRecord>(this.store.workers)) {
      if (w.state !== 'online') continue;
      // Workers get a few heartbeat timeouts to reconnect (their backoff) before their shards move.
      this.workers.set(w.id, {
        record: { ...w, lastHeartbeatMs: now + 2 * this.opts.heartbeatTimeoutMs },
        link: null,
        busy: new Map(),
      });
    }
    for (const job of this.jobs.values()) {
      if (isTerminal(job.state)) continue;
      for (const s of job.shards) {
        const w = this.workers.get(s.workerId);
        if ((s.state === 'assigned' || s.state === 'running') && w) w.busy.set(s.device, s.id);
        else if (s.state === 'assigned' || s.state === 'running') this.releaseShard(job, s);
      }
      if (job.state === 'merging') void this.finish(job);
    }
    this.timer = setInterval(() => void this.tick(), Math.min(1000, this.opts.heartbeatTimeoutMs / 3));
    this.opts.log(`coordinator: ${this.jobs.size} job(s) loaded from JetStream`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.workers.values()) w.link?.close();
    await Promise.all([...this.saveChains.values()]);
    await this.pubChain.catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------- events/state

  publish<T extends EventType>(type: T, jobId: string | null, data: EventData<T>, msgId?: string): Promise<unknown> {
    const subject = jobId
      ? this.store.names.jobEvent(jobId, type)
      : this.store.names.workerEvent((data as { workerId: string }).workerId, type);
    const event = makeEvent(type, jobId, data);
    // One chain keeps events in the order things happened.
    this.pubChain = this.pubChain
      .then(() => this.store.publish(event, subject, msgId))
      .catch((err) => this.opts.log(`publish ${type} failed: ${errorMessage(err)}`));
    return this.pubChain;
  }

  saveJob(job: JobRecord): Promise<void> {
    job.updatedMs = Date.now();
    const snapshot = JSON.stringify(job);
    const prev = this.saveChains.get(job.id) ?? Promise.resolve();
    const next = prev
      .then(() => this.store.jobs.put(job.id, snapshot).then(() => undefined))
      .catch((err) => this.opts.log(`saving job ${job.id} failed: ${errorMessage(err)}`));
    this.saveChains.set(job.id, next);
    return next;
  }

  private async saveWorker(w: WorkerRecord): Promise<void> {
    await this.store
      .putJson(this.store.workers, w.id, w)
      .catch((err) => this.opts.log(`saving worker failed: ${errorMessage(err)}`));
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

  // ----------------------------------------------------------------------------------- client API

  async submit(specText: string, name: string): Promise<JobRecord> {
    if (specText.length > 1 << 20) throw new ChorusError('spec: larger than 1 MiB');
    const spec = parseJobSpec(specText, { sourcePath: undefined });
    const id = newJobId();
    const job = planJob(id, spec, specText, name);
    for (const t of spec.tasks) job.layers[t.name] = emptyLayerStats(0);
    this.jobs.set(id, job);
    await this.saveJob(job);
    await this.publish(
      'job.submitted',
      id,
      {
        name: job.name,
        tasks: spec.tasks.map((t) => ({
          name: t.name,
          replicas: t.replicas,
          steps: job.shards.find((s) => s.task === t.name)!.totalSteps,
        })),
        shards: job.shards.length,
      },
      `${id}.submitted`,
    );
    await this.publish(
      'job.state',
      id,
      { state: 'queued', previous: null, reason: job.reason },
      `${id}.state.new.queued`,
    );
    this.opts.log(`job ${id} submitted: ${job.shards.length} shard(s)`);
    void this.schedule();
    return job;
  }

  getJob(id: string): JobRecord {
    const job = this.jobs.get(id);
    if (!job) throw new NotFound(`no job with id "${id}"`);
    return job;
  }

  async cancel(id: string, reason: string): Promise<JobRecord> {
    const job = this.getJob(id);
    if (isTerminal(job.state)) return job;
    for (const s of job.shards) {
      if (s.state === 'assigned' || s.state === 'running') {
        this.workers.get(s.workerId)?.link?.send({ kind: { $case: 'cancel', value: { shardId: s.id, reason } } });
        this.freeDevice(s);
        s.state = 'failed';
      }
    }
    this.dropAllGradTotals(job);
    await this.setState(job, 'cancelled', reason);
    void this.schedule();
    return job;
  }

  // --------------------------------------------------------------------------------------- workers

  /** A worker stream said hello (first time or after a reconnect, ours or theirs). */
  async register(
    link: WorkerLink,
    msg: Extract<WorkerMessage['kind'], { $case: 'register' }>['value'],
  ): Promise<string> {
    const known = msg.workerId ? this.workers.get(msg.workerId) : undefined;
    const id = known
      ? msg.workerId
      : msg.workerId && /^[A-Za-z0-9_-]+$/.test(msg.workerId)
        ? msg.workerId
        : `w${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    const record: WorkerRecord = {
      id,
      name: msg.name || id,
      state: 'online',
      devices: msg.devices.map((d) => ({
        id: d.id,
        kind: d.kind,
        description: d.description,
        memoryBytes: d.memoryBytes,
      })),
      lastHeartbeatMs: Date.now(),
    };
    const live: LiveWorker = known ?? { record, link: null, busy: new Map() };
    live.record = record;
    live.link?.close();
    live.link = link;
    this.workers.set(id, live);
    link.send({
      kind: { $case: 'registered', value: { workerId: id, heartbeatIntervalMs: this.opts.heartbeatIntervalMs } },
    });
    // Shards still running there go on when we still think they belong there; others are stopped.
    const keep = new Set<string>();
    for (const r of msg.running) {
      const job = this.jobs.get(r.jobId);
      const shard = job?.shards.find((s) => s.id === r.shardId);
      if (
        job &&
        shard &&
        !isTerminal(job.state) &&
        shard.state !== 'finished' &&
        r.attempt === shard.attempts &&
        (shard.workerId === id || shard.state === 'pending')
      ) {
        if (shard.state === 'pending') {
          shard.state = 'running';
          shard.workerId = id;
          shard.device = r.device;
          void this.saveJob(job);
        }
        keep.add(shard.id);
        live.busy.set(r.device, shard.id);
      } else {
        link.send({
          kind: { $case: 'cancel', value: { shardId: r.shardId, reason: 'reassigned while this worker was away' } },
        });
      }
    }
    // Shards we had placed there that it no longer runs (it restarted): place them again.
    for (const [device, shardId] of [...live.busy]) {
      if (keep.has(shardId)) continue;
      live.busy.delete(device);
      const { job, shard } = this.findShard(shardId);
      if (job && shard && (shard.state === 'assigned' || shard.state === 'running')) this.releaseShard(job, shard);
    }
    await this.saveWorker(record);
    await this.publish('worker.state', null, {
      workerId: id,
      name: record.name,
      state: 'online',
      devices: record.devices.map((d) => d.id),
      reason: known ? 'reconnected' : 'registered',
    });
    this.opts.log(`worker ${record.name} (${id}) online with ${record.devices.length} device(s)`);
    void this.schedule();
    return id;
  }

  heartbeat(workerId: string): void {
    const w = this.workers.get(workerId);
    if (w) w.record.lastHeartbeatMs = Date.now();
  }

  /** The worker's stream ended; the watchdog declares it dead unless it comes back in time. */
  disconnected(workerId: string, link: WorkerLink): void {
    const w = this.workers.get(workerId);
    if (w && w.link === link) w.link = null;
  }

  async leaving(workerId: string, reason: string): Promise<void> {
    await this.workerGone(workerId, 'left', reason);
  }

  private lastTick = Date.now();

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    const late = now - this.lastTick;
    this.lastTick = now;
    // If our own loop stalled (GC, a long synchronous task), heartbeats may still sit unread in
    // the sockets: judge nobody this round.
    if (late > this.opts.heartbeatTimeoutMs / 2) return;
    for (const w of [...this.workers.values()]) {
      if (now - w.record.lastHeartbeatMs > this.opts.heartbeatTimeoutMs) {
        await this.workerGone(w.record.id, 'dead', `no heartbeat for ${this.opts.heartbeatTimeoutMs} ms`);
      }
    }
  }

  private async workerGone(workerId: string, state: 'dead' | 'left', reason: string): Promise<void> {
    const w = this.workers.get(workerId);
    if (!w) return;
    this.workers.delete(workerId);
    w.link?.close();
    w.record.state = state;
    await this.saveWorker(w.record);
    await this.publish('worker.state', null, {
      workerId,
      name: w.record.name,
      state,
      devices: w.record.devices.map((d) => d.id),
      reason,
    });
    this.opts.log(`worker ${w.record.name} (${workerId}) ${state}: ${reason}`);
    for (const shardId of w.busy.values()) {
      const { job, shard } = this.findShard(shardId);
      if (!job || !shard || isTerminal(job.state)) continue;
      if (shard.state === 'assigned' || shard.state === 'running') {
        await this.shardLost(job, shard, `worker ${w.record.name} ${state}: ${reason}`);
      }
    }
    for (const [reqId, ev] of this.evals) {
      if (ev.workerId === workerId) {
        this.evals.delete(reqId);
        ev.reject(new Error(`worker ${w.record.name} ${state}`));
      }
    }
    void this.schedule();
  }

  private async shardLost(job: JobRecord, shard: ShardRecord, why: string): Promise<void> {
    const willRetry = shard.attempts < this.opts.maxAttempts;
    await this.publish('shard.failed', job.id, {
      shardId: shard.id,
      task: shard.task,
      replica: shard.replica,
      workerId: shard.workerId,
      error: why,
      willRetry,
    });
    this.releaseShard(job, shard);
    if (!willRetry) {
      shard.state = 'failed';
      await this.failJob(job, `shard ${shard.id} failed ${shard.attempts} time(s); last: ${why}`);
      return;
    }
    await this.saveJob(job);
  }

  private releaseShard(job: JobRecord, shard: ShardRecord): void {
    this.freeDevice(shard);
    shard.state = 'pending';
    shard.workerId = '';
    shard.device = '';
    void job;
  }

  private freeDevice(shard: ShardRecord): void {
    const w = this.workers.get(shard.workerId);
    if (w && w.busy.get(shard.device) === shard.id) w.busy.delete(shard.device);
  }

  async failJob(job: JobRecord, reason: string): Promise<void> {
    if (isTerminal(job.state)) return;
    for (const s of job.shards) {
      if (s.state === 'assigned' || s.state === 'running') {
        this.workers
          .get(s.workerId)
          ?.link?.send({ kind: { $case: 'cancel', value: { shardId: s.id, reason: 'job failed' } } });
        this.freeDevice(s);
      }
    }
    this.dropAllGradTotals(job);
    await this.setState(job, 'failed', reason);
    void this.schedule();
  }

  findShard(shardId: string): { job: JobRecord | undefined; shard: ShardRecord | undefined } {
    const jobId = shardId.slice(0, shardId.indexOf('-t'));
    const job = this.jobs.get(jobId);
    return { job, shard: job?.shards.find((s) => s.id === shardId) };
  }

  freeDevices(): FreeDevice[] {
    const out: FreeDevice[] = [];
    for (const w of this.workers.values()) {
      if (!w.link) continue;
      for (const d of w.record.devices) if (!w.busy.has(d.id)) out.push({ workerId: w.record.id, device: d.id });
    }
    return out;
  }

  listWorkers(): { record: WorkerRecord; shards: string[] }[] {
    return [...this.workers.values()].map((w) => ({ record: w.record, shards: [...w.busy.values()] }));
  }

  // ------------------------------------------------------------------------------------ scheduling

  async schedule(): Promise<void> {
    if (this.scheduling || this.stopped) return;
    this.scheduling = true;
    try {
      const sched: SchedJob[] = [];
      for (const job of [...this.jobs.values()].sort((a, b) => a.createdMs - b.createdMs)) {
        if (job.state !== 'queued' && job.state !== 'running') continue;
        sched.push({
          id: job.id,
          state: job.state,
          pendingShards: job.shards.filter((s) => s.state === 'pending').map((s) => s.id),
        });
      }
      const { placements, waiting } = schedule(sched, this.freeDevices());
      const touched = new Set<JobRecord>();
      for (const p of placements) {
        const { job, shard } = this.findShard(p.shardId);
        const w = this.workers.get(p.workerId);
        if (!job || !shard || !w?.link) continue;
        shard.state = 'assigned';
        shard.workerId = p.workerId;
        shard.device = p.device;
        shard.attempts++;
        w.busy.set(p.device, shard.id);
        touched.add(job);
        const resume = shard.checkpoint;
        w.link.send({
          kind: {
            $case: 'assign',
            value: {
              jobId: job.id,
              shardId: shard.id,
              device: p.device,
              plan: JSON.stringify(shardPlan(job, shard)),
              resumeObject: resume?.object ?? '',
              resumeStep: resume?.step ?? 0,
              attempt: shard.attempts,
            },
          },
        });
        await this.publish('shard.assigned', job.id, {
          shardId: shard.id,
          task: shard.task,
          replica: shard.replica,
          workerId: w.record.id,
          workerName: w.record.name,
          device: p.device,
          attempt: shard.attempts,
          resumeStep: resume?.step ?? 0,
        });
      }
      for (const job of touched) {
        if (job.state === 'queued') await this.setState(job, 'running', `${job.shards.length} shard(s) placed`);
        else await this.saveJob(job);
      }
      for (const [jobId, reason] of waiting) {
        const job = this.jobs.get(jobId)!;
        if (job.state === 'queued' && job.reason !== reason) {
          job.reason = reason;
          await this.saveJob(job);
        }
      }
    } finally {
      this.scheduling = false;
    }
  }

  // ------------------------------------------------------------------------------ shard reports

  /** The shard a report is about, if the report comes from its current placement. */
  private liveShard(workerId: string, shardId: string, attempt: number): { job: JobRecord; shard: ShardRecord } | null {
    const { job, shard } = this.findShard(shardId);
    if (!job || !shard || isTerminal(job.state) || shard.workerId !== workerId || attempt !== shard.attempts)
      return null;
    return { job, shard };
  }

  async progress(workerId: string, p: Extract<WorkerMessage['kind'], { $case: 'progress' }>['value']): Promise<void> {
    const found = this.liveShard(workerId, p.shardId, p.attempt);
    if (!found) return;
    const { job, shard } = found;
    if (shard.state === 'assigned') {
      shard.state = 'running';
      await this.publish('shard.started', job.id, {
        shardId: shard.id,
        task: shard.task,
        replica: shard.replica,
        workerId,
        step: p.step,
      });
    }
    const fresh = p.step > shard.step;
    shard.step = p.step;
    shard.loss = p.loss;
    shard.tokens = p.tokens;
    if (fresh) {
      const mismatch = this.checkMask(job, shard, p.step - 1, p.numLayers, p.activeLayers);
      if (mismatch) {
        await this.failJob(job, mismatch);
        return;
      }
      const stats = job.layers[shard.task];
      while (stats.activationCounts.length < p.numLayers) for (const arr of Object.values(stats)) arr.push(0);
      addLayerStep(stats, p.activeLayers, p.loss);
    }
    // Not awaited: the publish chain keeps the order, and the worker's next message (its gradients)
    // need not wait for NATS to acknowledge a metrics event.
    void this.publish('metrics', job.id, {
      shardId: shard.id,
      task: shard.task,
      replica: shard.replica,
      step: p.step,
      totalSteps: shard.totalSteps,
      loss: p.loss,
      lr: p.lr,
      p: p.p,
      tokens: p.tokens,
      tokensPerSec: p.tokensPerS,
      activeLayers: p.activeLayers,
    });
    if (p.step % 10 === 0 || p.step === shard.totalSteps) void this.saveJob(job);
  }

  /**
   * The coordinator owns the CoTo schedule: the layers a replica trained at `step` must be exactly
   * the draw from (task seed, step) at the scheduled p(step) — the same for every replica.
   */
  private checkMask(
    job: JobRecord,
    shard: ShardRecord,
    step: number,
    numLayers: number,
    active: number[],
  ): string | null {
    if (numLayers <= 0) return null;
    const t = resolveTask(job.spec, shard.task);
    const expected = t.coto.enabled
      ? cotoMaskForStep(t.seed, step, t.training.steps, numLayers, {
          pStart: t.coto.p_start,
          pEnd: t.coto.p_end,
          rampFraction: t.coto.ramp_fraction,
        })
      : new Array<boolean>(numLayers).fill(true);
    const want = expected.flatMap((on, l) => (on ? [l] : []));
    if (want.length === active.length && want.every((l, i) => l === active[i])) return null;
    return `replica ${shard.replica} of task ${shard.task} trained layers [${active.join(',')}] at step ${step}; the CoTo schedule says [${want.join(',')}]`;
  }

  async gradients(workerId: string, g: Extract<WorkerMessage['kind'], { $case: 'gradients' }>['value']): Promise<void> {
    const found = this.liveShard(workerId, g.shardId, g.attempt);
    if (!found) return;
    const { job, shard } = found;
    const key = `${job.id}/${shard.task}`;
    let agg = this.grads.get(key);
    if (!agg) {
      agg = new GradientAggregator(shard.replicas);
      this.grads.set(key, agg);
    }
    const msg = (shardId: string, t: GradTotal): CoordinatorMessage => ({
      kind: {
        $case: 'gradientSum',
        value: {
          shardId,
          step: t.step,
          gradSums: Buffer.from(t.sums.buffer, t.sums.byteOffset, t.sums.byteLength),
          tokens: t.tokens,
          lossSum: t.lossSum,
        },
      },
    });
    let known = agg.total(g.step);
    if (!known && agg.mayBeDurable(g.step)) {
      const bytes = await this.store.getObject(objectNames.gradTotal(job.id, shard.task, g.step)).catch(() => null);
      if (bytes) {
        known = decodeTotal(g.step, bytes);
        agg.remember(known);
        this.opts.log(
          `job ${job.id}: replica ${shard.replica} of ${shard.task} replays step ${g.step} with the sum stored in the object store`,
        );
      }
    }
    if (known) {
      // A replica replaying steps it lost (moved, reconnected, or the coordinator restarted):
      // only it needs the answer, and it gets exactly what the others applied.
      this.workers.get(workerId)?.link?.send(msg(shard.id, known));
      return;
    }
    const r = agg.add(g.step, { replica: shard.replica, sums: g.gradSums, tokens: g.tokens, lossSum: g.lossSum });
    if (!r) return;
    // Durable before any replica sees it: whatever dies next, a replay finds the same bits.
    await this.store.putObject(objectNames.gradTotal(job.id, shard.task, g.step), encodeTotal(r.total));
    for (const s of job.shards)
      if (s.task === shard.task && s.workerId) this.workers.get(s.workerId)?.link?.send(msg(s.id, r.total));
  }

  /** A job that ends (any way) needs none of its gradient totals any more. */
  private dropAllGradTotals(job: JobRecord): void {
    if (job.spec.sync.mode !== 'gradients') return;
    for (const t of job.spec.tasks) {
      this.grads.delete(`${job.id}/${t.name}`);
      if (t.replicas > 1) this.dropGradTotals(job, t.name, job.shards.find((s) => s.task === t.name)!.totalSteps);
    }
  }

  /** Deletes stored gradient totals below `floor` (every replica has checkpointed at or past it). */
  private dropGradTotals(job: JobRecord, task: string, floor: number): void {
    job.gradFloor ??= {};
    const from = job.gradFloor[task] ?? 0;
    if (floor <= from) return;
    job.gradFloor[task] = floor;
    for (let s = from; s < floor; s++)
      void this.store.objects.delete(objectNames.gradTotal(job.id, task, s)).catch(() => undefined);
  }

  async checkpoint(
    workerId: string,
    c: Extract<WorkerMessage['kind'], { $case: 'checkpoint' }>['value'],
  ): Promise<void> {
    const found = this.liveShard(workerId, c.shardId, c.attempt);
    if (!found) return;
    const { job, shard } = found;
    shard.checkpoint = { step: c.step, object: c.object };
    if (job.spec.sync.mode === 'gradients' && shard.replicas > 1) {
      const replicas = job.shards.filter((s) => s.task === shard.task);
      // A checkpoint at step c resumes by recomputing step c: keep totals from c on.
      const floor = Math.min(...replicas.map((s) => s.checkpoint?.step ?? 0));
      this.grads.get(`${job.id}/${shard.task}`)?.forgetThrough(floor - 1);
      this.dropGradTotals(job, shard.task, floor);
    }
    await this.saveJob(job);
  }

  async adapterReady(
    workerId: string,
    a: Extract<WorkerMessage['kind'], { $case: 'adapterReady' }>['value'],
  ): Promise<void> {
    const found = this.liveShard(workerId, a.shardId, a.attempt);
    if (!found) return;
    const { job, shard } = found;
    await this.publish(
      'round.adapter_ready',
      job.id,
      {
        shardId: shard.id,
        task: shard.task,
        replica: shard.replica,
        round: a.round,
        step: a.step,
        object: a.object,
        sha256: a.sha256,
        bytes: a.bytes,
      },
      `${job.id}.${shard.id}.round.${a.round}.ready`,
    );
    const done = job.rounds[shard.task];
    if (done && done.round >= a.round) {
      // Already merged (a replica that moved or reconnected re-sent it): hand it the result.
      this.sendRoundMerged(job, shard, a.round);
      return;
    }
    const key = `${job.id}/${shard.task}/${a.round}`;
    const parts = this.roundParts.get(key) ?? new Map();
    parts.set(shard.replica, { object: a.object, sha256: a.sha256, step: a.step });
    this.roundParts.set(key, parts);
    if (parts.size < shard.replicas || this.roundsInFlight.has(key)) return;
    this.roundsInFlight.add(key);
    try {
      const objects = [...parts.entries()].sort((x, y) => x[0] - y[0]).map(([, p]) => p);
      const method = job.spec.sync.mode === 'weights' ? job.spec.sync.method : 'mean';
      const merged = await reconcileRound(this.store, job, shard.task, a.round, objects, method);
      job.rounds[shard.task] = { round: a.round, step: a.step, object: merged.name, sha256: merged.sha256 };
      this.roundParts.delete(key);
      await this.saveJob(job);
      await this.publish(
        'round.merged',
        job.id,
        {
          task: shard.task,
          round: a.round,
          step: a.step,
          method,
          object: merged.name,
          sha256: merged.sha256,
          bytes: merged.size,
        },
        `${job.id}.${shard.task}.round.${a.round}.merged`,
      );
      for (const s of job.shards) if (s.task === shard.task) this.sendRoundMerged(job, s, a.round);
    } catch (err) {
      await this.failJob(job, `round ${a.round} of task ${shard.task}: ${errorMessage(err)}`);
    } finally {
      this.roundsInFlight.delete(key);
    }
  }

  private sendRoundMerged(job: JobRecord, shard: ShardRecord, round: number): void {
    const r = job.rounds[shard.task];
    if (!r || !shard.workerId) return;
    this.workers.get(shard.workerId)?.link?.send({
      kind: {
        $case: 'roundMerged',
        value: { shardId: shard.id, round, step: r.step, object: r.object, sha256: r.sha256 },
      },
    });
  }

  async shardDone(workerId: string, d: Extract<WorkerMessage['kind'], { $case: 'shardDone' }>['value']): Promise<void> {
    const found = this.liveShard(workerId, d.shardId, d.attempt);
    if (!found) return;
    const { job, shard } = found;
    let summary: { steps?: number; tokens?: number; finalLoss?: number | null } = {};
    try {
      summary = JSON.parse(d.summary || '{}') as typeof summary;
    } catch {
      // A summary is informational: a malformed one must not leave the shard unfinished.
      this.opts.log(`shard ${d.shardId}: ignoring a malformed summary`);
    }
    shard.state = 'finished';
    shard.final = { object: d.object, sha256: d.sha256 };
    shard.step = summary.steps ?? shard.totalSteps;
    this.freeDevice(shard);
    await this.saveJob(job);
    await this.publish(
      'shard.finished',
      job.id,
      {
        shardId: shard.id,
        task: shard.task,
        replica: shard.replica,
        steps: shard.step,
        tokens: summary.tokens ?? shard.tokens,
        finalLoss: summary.finalLoss ?? null,
        object: d.object,
        sha256: d.sha256,
      },
      `${job.id}.${shard.id}.finished`,
    );
    if (job.shards.every((s) => s.state === 'finished')) {
      this.dropAllGradTotals(job);
      void this.finish(job);
    }
    void this.schedule();
  }

  async shardFailed(
    workerId: string,
    f: Extract<WorkerMessage['kind'], { $case: 'shardFailed' }>['value'],
  ): Promise<void> {
    const found = this.liveShard(workerId, f.shardId, f.attempt);
    if (!found) return;
    await this.shardLost(found.job, found.shard, f.error);
    void this.schedule();
  }

  private async finish(job: JobRecord): Promise<void> {
    if (this.finalizing.has(job.id)) return;
    this.finalizing.add(job.id);
    try {
      await this.setState(
        job,
        'merging',
        job.spec.merge === 'none'
          ? 'writing task adapters and report'
          : `merging task adapters (${job.spec.merge.method})`,
      );
      await finalizeJob(this, job);
      if (job.state === 'merging')
        await this.setState(
          job,
          'succeeded',
          `${job.spec.tasks.length} task adapter(s)${job.spec.merge === 'none' ? '' : ' and a merged adapter'} ready`,
        );
    } catch (err) {
      this.opts.log(`job ${job.id}: finishing failed: ${errorMessage(err)}`);
      await this.failJob(job, `final merge/report: ${errorMessage(err)}`);
    } finally {
      this.finalizing.delete(job.id);
    }
  }

  // ------------------------------------------------------------------------- evaluation (Shapley)

  /** Runs an evaluation plan on a free device (any worker); resolves to one loss per coalition. */
  evalOnWorker(jobId: string, plan: string): Promise<number[]> {
    const free = this.freeDevices()[0];
    if (!free) return Promise.reject(new Error('no free device for evaluation'));
    const w = this.workers.get(free.workerId)!;
    const requestId = `${jobId}-eval-${Math.random().toString(36).slice(2, 10)}`;
    w.busy.set(free.device, requestId);
    const parsed = JSON.parse(plan) as { coalitions: number[][] };
    return new Promise<number[]>((resolve, reject) => {
      this.evals.set(requestId, {
        resolve,
        reject,
        workerId: w.record.id,
        device: free.device,
        count: parsed.coalitions.length,
      });
      w.link!.send({
        kind: { $case: 'eval', value: { requestId, jobId, plan: JSON.stringify({ ...parsed, device: free.device }) } },
      });
    }).finally(() => {
      if (w.busy.get(free.device) === requestId) w.busy.delete(free.device);
      void this.schedule();
    });
  }

  /** An evaluation's answer, accepted only from the worker it was sent to; always settles the request. */
  evalResult(workerId: string, r: Extract<WorkerMessage['kind'], { $case: 'evalResult' }>['value']): void {
    const ev = this.evals.get(r.requestId);
    if (!ev || ev.workerId !== workerId) return;
    this.evals.delete(r.requestId);
    if (r.error) {
      ev.reject(new Error(r.error));
      return;
    }
    let losses: unknown = null;
    try {
      losses = JSON.parse(r.losses);
    } catch {
      // reported below
    }
    if (!Array.isArray(losses) || losses.length !== ev.count || !losses.every((x) => typeof x === 'number')) {
      ev.reject(
        new Error(
          `evaluation ${r.requestId}: the worker sent ${JSON.stringify(r.losses).slice(0, 80)} instead of ${ev.count} losses`,
        ),
      );
      return;
    }
    ev.resolve(losses as number[]);
  }

  devicesOf(workerId: string): Device[] {
    const w = this.workers.get(workerId);
    return (w?.record.devices ?? []).map((d) => ({ ...d }));
  }
}

export class NotFound extends ChorusError {}

export { objectNames, roundObject };
