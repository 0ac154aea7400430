// The worker side of the cluster: registration (first time or after a reconnect, ours or theirs),
// heartbeats, and the watchdog that declares a silent worker dead — its shards are then lost and
// placed elsewhere, its evaluations fail.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../shared/digest.ts';
import { ChorusError } from '../shared/errors.ts';
import type { WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import { isTerminal } from '../shared/nats/events.ts';
import type { Evaluations } from './evals.ts';
import type { Shards } from './shards.ts';
import type { ClusterState, LiveWorker, WorkerLink } from './state.ts';
import type { WorkerRecord } from './types.ts';

type Register = Extract<WorkerMessage['kind'], { $case: 'register' }>['value'];

/** A registration under an id this connection cannot prove is its own (rpc: PERMISSION_DENIED). */
export class WorkerRefused extends ChorusError {}

function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Workers {
  private timer: NodeJS.Timeout | null = null;
  private lastTick = Date.now();

  constructor(
    private readonly state: ClusterState,
    private readonly shards: Shards,
    private readonly evals: Evaluations,
  ) {}

  startWatchdog(): void {
    this.timer = setInterval(() => void this.tick(), Math.min(1000, this.state.opts.heartbeatTimeoutMs / 3));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.state.workers.values()) w.link?.close();
  }

  async register(link: WorkerLink, msg: Register): Promise<string> {
    const { state } = this;
    const id =
      msg.workerId && msg.workerId.length <= 128 && /^[A-Za-z0-9_-]+$/.test(msg.workerId)
        ? msg.workerId
        : `w${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
    // An id is bound to the secret issued with it: whoever names it without the secret is refused
    // before anything changes (the live worker keeps its stream and its shards).
    const bound = state.workerSecrets.get(id);
    if (bound !== undefined && !sameDigest(sha256Hex(Buffer.from(msg.secret)), bound))
      throw new WorkerRefused(
        `worker id ${id} belongs to another worker process (this connection did not present its secret); start the worker without an id to get a new one`,
      );
    const secret = bound !== undefined ? msg.secret : randomBytes(24).toString('base64url');
    const secretSha256 = bound ?? sha256Hex(Buffer.from(secret));
    state.workerSecrets.set(id, secretSha256);
    const known = state.workers.get(id);
    const record: WorkerRecord = {
      id,
      name: msg.name || id,
      state: 'online',
      devices: msg.devices.map((d) => ({
        id: d.id,
        kind: d.kind,
        description: d.description,
        memoryBytes: d.memoryBytes,
        engine: d.engine,
      })),
      lastHeartbeatMs: Date.now(),
      secretSha256,
    };
    const live: LiveWorker = known ?? { record, link: null, busy: new Map() };
    live.record = record;
    live.link?.close();
    live.link = link;
    state.workers.set(id, live);
    link.send({
      kind: {
        $case: 'registered',
        value: { workerId: id, heartbeatIntervalMs: state.opts.heartbeatIntervalMs, secret },
      },
    });
    // Shards still running there go on when we still think they belong there; others are stopped.
    const keep = new Set<string>();
    for (const r of msg.running) {
      // An evaluation request (named by its id): kept while we still wait for its answer from here.
      if (this.evals.runsOn(id, r.shardId)) {
        keep.add(r.shardId);
        live.busy.set(r.device, r.shardId);
        continue;
      }
      const job = state.jobs.get(r.jobId);
      const shard = job?.shards.find((s) => s.id === r.shardId);
      const ours =
        job &&
        shard &&
        !isTerminal(job.state) &&
        shard.state !== 'finished' &&
        r.attempt === shard.attempts &&
        (shard.workerId === id || shard.state === 'pending');
      if (ours) {
        if (shard.state === 'pending') {
          shard.state = 'running';
          shard.workerId = id;
          shard.device = r.device;
          void state.saveJob(job);
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
      this.evals.lost(id, shardId);
      const { shard } = state.findShard(shardId);
      if (shard && (shard.state === 'assigned' || shard.state === 'running')) state.releaseShard(shard);
    }
    await state.saveWorker(record);
    await state.publish('worker.state', null, {
      workerId: id,
      name: record.name,
      state: 'online',
      devices: record.devices.map((d) => d.id),
      reason: known ? 'reconnected' : 'registered',
    });
    state.log(`worker ${record.name} (${id}) online with ${record.devices.length} device(s)`);
    state.scheduleSoon();
    return id;
  }

  heartbeat(workerId: string): void {
    const w = this.state.workers.get(workerId);
    if (w) w.record.lastHeartbeatMs = Date.now();
  }

  /** The worker's stream ended; the watchdog declares it dead unless it comes back in time. */
  disconnected(workerId: string, link: WorkerLink): void {
    const w = this.state.workers.get(workerId);
    if (w && w.link === link) w.link = null;
  }

  async leaving(workerId: string, reason: string): Promise<void> {
    await this.gone(workerId, 'left', reason);
  }

  /** Devices a coordinator restart found busy: they stay reserved for shards whose workers come back. */
  reattach(): void {
    const { state } = this;
    for (const job of state.jobs.values()) {
      if (isTerminal(job.state)) continue;
      for (const s of job.shards) {
        if (s.state !== 'assigned' && s.state !== 'running') continue;
        const w = state.workers.get(s.workerId);
        if (w) w.busy.set(s.device, s.id);
        else state.releaseShard(s);
      }
    }
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    const late = now - this.lastTick;
    this.lastTick = now;
    const timeout = this.state.opts.heartbeatTimeoutMs;
    // If our own loop stalled (GC, a long synchronous task), heartbeats may still sit unread in
    // the sockets: judge nobody this round.
    if (late > timeout / 2) return;
    for (const w of [...this.state.workers.values()]) {
      if (now - w.record.lastHeartbeatMs > timeout)
        await this.gone(w.record.id, 'dead', `no heartbeat for ${timeout} ms`);
    }
    for (const job of [...this.state.jobs.values()]) if (job.state === 'running') await this.shards.checkStalled(job);
  }

  private async gone(workerId: string, how: 'dead' | 'left', reason: string): Promise<void> {
    const { state } = this;
    const w = state.workers.get(workerId);
    if (!w) return;
    state.workers.delete(workerId);
    w.link?.close();
    w.record.state = how;
    await state.saveWorker(w.record);
    await state.publish('worker.state', null, {
      workerId,
      name: w.record.name,
      state: how,
      devices: w.record.devices.map((d) => d.id),
      reason,
    });
    state.log(`worker ${w.record.name} (${workerId}) ${how}: ${reason}`);
    for (const shardId of w.busy.values()) {
      const { job, shard } = state.findShard(shardId);
      if (!job || !shard || isTerminal(job.state)) continue;
      if (shard.state === 'assigned' || shard.state === 'running') {
        await this.shards.workerLost(job, shard, w.record.name, `worker ${w.record.name} ${how}: ${reason}`);
      }
    }
    this.evals.workerGone(workerId, `worker ${w.record.name} ${how}`);
    state.scheduleSoon();
  }
}
