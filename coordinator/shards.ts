// What workers report about the shards they run: progress (every step; checked against the CoTo
// schedule the coordinator owns, folded into the per-layer figures), checkpoints, the end of a shard,
// and failures — a shard whose own run failed is placed again until it has used up its budget; one
// that lost its worker is placed again while the job makes progress (retries.ts).
import { LayerActivity } from '../shared/coto/activity.ts';
import { activeLayersAt } from '../shared/coto/schedule.ts';
import type { WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import type { Jobs } from './jobs.ts';
import type { ClusterState } from './state.ts';
import type { GradientSync } from './sync/gradients.ts';
import type { JobRecord, ShardRecord } from './types.ts';

type Msg<K extends NonNullable<WorkerMessage['kind']>['$case']> = Extract<WorkerMessage['kind'], { $case: K }>['value'];

export class Shards {
  constructor(
    private readonly state: ClusterState,
    private readonly jobs: Jobs,
    private readonly gradients: GradientSync,
  ) {}

  async progress(workerId: string, p: Msg<'progress'>): Promise<void> {
    const { state } = this;
    const found = state.liveShard(workerId, p.shardId, p.attempt);
    if (!found) return;
    const { job, shard } = found;
    if (shard.state === 'assigned') {
      shard.state = 'running';
      await state.publish('shard.started', job.id, {
        shardId: shard.id,
        task: shard.task,
        replica: shard.replica,
        workerId,
        step: p.step,
      });
    }
    const fresh = p.step > shard.step;
    if (fresh) state.retries.progressed(job.id, shard.id, this.workerName(workerId));
    shard.step = p.step;
    shard.loss = p.loss;
    shard.tokens = p.tokens;
    // `fresh` is relative to the last report, so after a move it is true again for steps the shard
    // already ran before the move; those must not be counted twice.
    if (fresh && p.numLayers > 0 && p.step > (shard.recorded ?? 0)) {
      shard.recorded = p.step;
      const mismatch = this.checkMask(job, shard, p.step - 1, p.numLayers, p.activeLayers);
      if (mismatch) {
        await state.endJob(job, 'failed', mismatch, 'job failed');
        return;
      }
      job.layers[shard.task] ??= new LayerActivity(p.numLayers);
      const on = new Set(p.activeLayers);
      job.layers[shard.task].record(
        Array.from({ length: p.numLayers }, (_, l) => on.has(l)),
        p.loss,
      );
    }
    // Not awaited: the publish chain keeps the order, and the worker's next message (its gradients)
    // need not wait for NATS to acknowledge a metrics event.
    void state.publish('metrics', job.id, {
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
    if (p.step % 10 === 0 || p.step === shard.totalSteps) void state.saveJob(job);
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
    const t = job.spec.tasks[shard.taskIndex];
    const expected = activeLayersAt(t.coto, t.seed, step, t.training.steps, numLayers);
    const want = expected.flatMap((on, l) => (on ? [l] : []));
    if (want.length === active.length && want.every((l, i) => l === active[i])) return null;
    return `replica ${shard.replica} of task ${shard.task} trained layers [${active.join(',')}] at step ${step}; the CoTo schedule says [${want.join(',')}]`;
  }

  async checkpoint(workerId: string, c: Msg<'checkpoint'>): Promise<void> {
    const found = this.state.liveShard(workerId, c.shardId, c.attempt);
    if (!found) return;
    const { job, shard } = found;
    shard.checkpoint = { step: c.step, object: c.object };
    this.gradients.checkpointed(job, shard);
    await this.state.saveJob(job);
  }

  async done(workerId: string, d: Msg<'shardDone'>): Promise<void> {
    const { state } = this;
    const found = state.liveShard(workerId, d.shardId, d.attempt);
    if (!found) return;
    const { job, shard } = found;
    state.retries.progressed(job.id, shard.id, this.workerName(workerId));
    shard.state = 'finished';
    shard.final = { object: d.object, sha256: d.sha256 };
    shard.step = d.steps || shard.totalSteps;
    state.freeDevice(shard);
    await state.saveJob(job);
    await state.publish(
      'shard.finished',
      job.id,
      {
        shardId: shard.id,
        task: shard.task,
        replica: shard.replica,
        steps: shard.step,
        tokens: d.tokens || shard.tokens,
        finalLoss: d.finalLoss ?? null,
        object: d.object,
        sha256: d.sha256,
      },
      `${job.id}.${shard.id}.finished`,
    );
    if (job.shards.every((s) => s.state === 'finished')) {
      state.trainingEnded(job);
      void this.jobs.finish(job);
    }
    state.scheduleSoon();
  }

  async failed(workerId: string, f: Msg<'shardFailed'>): Promise<void> {
    const found = this.state.liveShard(workerId, f.shardId, f.attempt);
    if (!found) return;
    await this.runFailed(found.job, found.shard, f.error);
    this.state.scheduleSoon();
  }

  /** The shard's own run failed: charged to its budget; placed again until the budget is used up. */
  async runFailed(job: JobRecord, shard: ShardRecord, why: string): Promise<void> {
    const { state } = this;
    shard.failures++;
    state.retries.runFailed(shard.id);
    const willRetry = shard.failures < state.opts.retries.maxFailures;
    await this.publishFailed(job, shard, why, willRetry);
    state.releaseShard(shard);
    if (!willRetry) {
      shard.state = 'failed';
      await state.endJob(
        job,
        'failed',
        `shard ${shard.id} failed ${shard.failures} time(s); last: ${why}`,
        'job failed',
      );
      return;
    }
    await state.saveJob(job);
  }

  /**
   * The shard's worker died or left: not the shard's fault, so it is placed again (with backoff
   * while it keeps losing workers before a step) unless the job has made no progress for too long.
   */
  async workerLost(job: JobRecord, shard: ShardRecord, workerName: string, why: string): Promise<void> {
    const { state } = this;
    const flapping = state.retries.workerLost(shard.id, workerName);
    if (flapping) {
      const { flapLimit, quarantineMs } = state.opts.retries;
      state.log(
        `worker ${flapping} is flapping: lost ${flapLimit} shards in a row before they took a step; no shards for ${Math.round(quarantineMs / 1000)} s`,
      );
    }
    const stalled = state.retries.stalledFor(
      job.id,
      job.shards.map((s) => s.id),
    );
    await this.publishFailed(job, shard, why, stalled === null);
    state.releaseShard(shard);
    if (stalled !== null) {
      await this.failStalled(job, stalled, why);
      return;
    }
    await state.saveJob(job);
  }

  /** The watchdog's check: a job whose shards keep losing workers without progress fails in the end. */
  async checkStalled(job: JobRecord): Promise<void> {
    const stalled = this.state.retries.stalledFor(
      job.id,
      job.shards.map((s) => s.id),
    );
    if (stalled !== null) await this.failStalled(job, stalled, 'its shards are waiting to be placed again');
  }

  private async failStalled(job: JobRecord, stalledMs: number, last: string): Promise<void> {
    const flapping = this.state.retries.quarantinedNames();
    const named = flapping.length ? `; flapping worker(s), given no shards: ${flapping.join(', ')}` : '';
    await this.state.endJob(
      job,
      'failed',
      `no progress for ${Math.round(stalledMs / 1000)} s while its shards kept losing their workers (last: ${last})${named}`,
      'job failed',
    );
  }

  private publishFailed(job: JobRecord, shard: ShardRecord, why: string, willRetry: boolean): Promise<unknown> {
    return this.state.publish('shard.failed', job.id, {
      shardId: shard.id,
      task: shard.task,
      replica: shard.replica,
      workerId: shard.workerId,
      error: why,
      willRetry,
    });
  }

  private workerName(workerId: string): string {
    return this.state.workers.get(workerId)?.record.name ?? workerId;
  }
}
