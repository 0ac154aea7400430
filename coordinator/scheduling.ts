// Placing shards on free devices and telling workers (the policy itself is placement.ts): a queued
// job starts when all its shards fit at once; a running job's pending shard (its worker died) goes
// to any free device and resumes from its last checkpoint.
import { placeShards, type FreeDevice, type SchedJob } from './placement.ts';
import { fitCheck } from './memory-fit.ts';
import { shardPlanMessage } from './plan.ts';
import type { ClusterState } from './state.ts';
import type { JobRecord } from './types.ts';

export class Scheduling {
  private running = false;
  private stopped = false;
  /** Wakes the scheduler when a backed-off shard may be placed again. */
  private wake: NodeJS.Timeout | null = null;

  constructor(private readonly state: ClusterState) {
    state.setScheduler(() => void this.run());
  }

  stop(): void {
    this.stopped = true;
    if (this.wake) clearTimeout(this.wake);
  }

  async run(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      const { state } = this;
      const queue: SchedJob[] = [];
      const now = Date.now();
      for (const job of [...state.jobs.values()].sort((a, b) => a.createdMs - b.createdMs)) {
        if (job.state !== 'queued' && job.state !== 'running') continue;
        const pending = job.shards
          .filter((s) => s.state === 'pending' && state.retries.ready(s.id, now))
          .map((s) => s.id);
        const check = fitCheck(job.spec, job.model);
        const unfit = check
          ? (shardId: string, d: FreeDevice) => {
              const device = state.workers.get(d.workerId)?.record.devices.find((x) => x.id === d.device);
              const shard = job.shards.find((s) => s.id === shardId);
              return device && shard ? check(shard.taskIndex, device) : null;
            }
          : undefined;
        queue.push({ id: job.id, state: job.state, pendingShards: pending, unfit });
      }
      const { placements, waiting } = placeShards(queue, state.freeDevices(), state.liveDevices());
      const touched = new Set<JobRecord>();
      for (const p of placements) {
        const { job, shard } = state.findShard(p.shardId);
        const w = state.workers.get(p.workerId);
        if (!job || !shard || !w?.link) continue;
        shard.state = 'assigned';
        shard.workerId = p.workerId;
        shard.device = p.device;
        shard.attempts++;
        state.retries.placed(job.id, shard.id);
        w.busy.set(p.device, shard.id);
        touched.add(job);
        const resume = shard.checkpoint;
        w.link.send({
          kind: {
            $case: 'assign',
            value: {
              plan: shardPlanMessage(job, shard),
              device: p.device,
              resumeObject: resume?.object ?? '',
              resumeStep: resume?.step ?? 0,
              attempt: shard.attempts,
            },
          },
        });
        await state.publish('shard.assigned', job.id, {
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
        if (job.state === 'queued') await state.setState(job, 'running', `${job.shards.length} shard(s) placed`);
        else await state.saveJob(job);
      }
      for (const [jobId, reason] of waiting) {
        const job = state.jobs.get(jobId)!;
        if (job.state === 'queued' && job.reason !== reason) {
          job.reason = reason;
          await state.saveJob(job);
        }
      }
      this.wakeForBackoff();
    } finally {
      this.running = false;
    }
  }

  private wakeForBackoff(): void {
    const next = this.state.retries.nextReadyMs();
    if (this.wake) clearTimeout(this.wake);
    this.wake = null;
    if (next === null || this.stopped) return;
    this.wake = setTimeout(() => void this.run(), Math.max(10, next - Date.now()));
    this.wake.unref();
  }
}
