// sync: gradients on the coordinator. Every step each replica sends the gradient sums of its batch;
// once all replicas of a task have sent step t, their exact sum (gradient-sums.ts) is stored in the
// object store and then sent to every replica, which applies it: R replicas train as one process
// with the global batch. Stored sums let a replica that moved (or a restarted coordinator) replay
// lost steps with the very bits the others applied; they are deleted once every replica has
// checkpointed past them, and when the job ends.
import type { CoordinatorMessage, WorkerMessage } from '../../shared/gen/chorus/v1/worker.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import type { ClusterState } from '../state.ts';
import type { JobRecord, ShardRecord } from '../types.ts';
import { GradientAggregator, decodeTotal, encodeTotal, type GradTotal } from './gradient-sums.ts';

type GradientPart = Extract<WorkerMessage['kind'], { $case: 'gradients' }>['value'];

export class GradientSync {
  private readonly aggregators = new Map<string, GradientAggregator>();

  constructor(private readonly state: ClusterState) {
    state.onTrainingEnd((job) => this.dropJob(job));
  }

  async gradients(workerId: string, g: GradientPart): Promise<void> {
    const { state } = this;
    const found = state.liveShard(workerId, g.shardId, g.attempt);
    if (!found) return;
    const { job, shard } = found;
    const key = `${job.id}/${shard.task}`;
    let agg = this.aggregators.get(key);
    if (!agg) {
      agg = new GradientAggregator(shard.replicas);
      this.aggregators.set(key, agg);
    }
    let known = agg.total(g.step);
    if (!known && agg.mayBeDurable(g.step)) {
      const bytes = await state.store.getObject(objectNames.gradTotal(job.id, shard.task, g.step)).catch(() => null);
      if (bytes) {
        known = decodeTotal(g.step, bytes);
        agg.remember(known);
        state.log(
          `job ${job.id}: replica ${shard.replica} of ${shard.task} replays step ${g.step} with the sum stored in the object store`,
        );
      }
    }
    if (known) {
      // A replica replaying steps it lost (moved, reconnected, or the coordinator restarted):
      // only it needs the answer, and it gets exactly what the others applied.
      state.send(workerId, sumMessage(shard.id, known));
      return;
    }
    const r = agg.add(g.step, { replica: shard.replica, sums: g.gradSums, tokens: g.tokens, lossSum: g.lossSum });
    if (!r) return;
    // Durable before any replica sees it: whatever dies next, a replay finds the same bits.
    await state.store.putObject(objectNames.gradTotal(job.id, shard.task, g.step), encodeTotal(r.total));
    for (const s of job.shards)
      if (s.task === shard.task && s.workerId) state.send(s.workerId, sumMessage(s.id, r.total));
  }

  /** A replica checkpointed: stored sums below every replica's checkpoint can go. */
  checkpointed(job: JobRecord, shard: ShardRecord): void {
    if (job.spec.sync.mode !== 'gradients' || shard.replicas < 2) return;
    const replicas = job.shards.filter((s) => s.task === shard.task);
    // A checkpoint at step c resumes by recomputing step c: keep totals from c on.
    const floor = Math.min(...replicas.map((s) => s.checkpoint?.step ?? 0));
    this.aggregators.get(`${job.id}/${shard.task}`)?.forgetThrough(floor - 1);
    this.dropStored(job, shard.task, floor);
  }

  /** A job that ends (any way) needs none of its gradient totals any more. */
  private dropJob(job: JobRecord): void {
    if (job.spec.sync.mode !== 'gradients') return;
    for (const t of job.spec.tasks) {
      this.aggregators.delete(`${job.id}/${t.name}`);
      if (t.replicas > 1) this.dropStored(job, t.name, t.training.steps);
    }
  }

  /** Deletes stored gradient totals below `floor`. */
  private dropStored(job: JobRecord, task: string, floor: number): void {
    job.gradFloor ??= {};
    const from = job.gradFloor[task] ?? 0;
    if (floor <= from) return;
    job.gradFloor[task] = floor;
    for (let s = from; s < floor; s++) {
      void this.state.store.objects.delete(objectNames.gradTotal(job.id, task, s)).catch(() => undefined);
    }
  }
}

function sumMessage(shardId: string, t: GradTotal): CoordinatorMessage {
  const gradSums = Buffer.from(t.sums.buffer, t.sums.byteOffset, t.sums.byteLength);
  return {
    kind: { $case: 'gradientSum', value: { shardId, step: t.step, gradSums, tokens: t.tokens, lossSum: t.lossSum } },
  };
}
