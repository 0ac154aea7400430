// sync: weights on the coordinator — what happens in a weight round. Every `every` steps each replica
// uploads its adapter and announces it (adapterReady: object name + SHA-256). When all replicas of a
// task have announced round n, their adapters are reconciled in ΔW space (shared/merge/reconcile.ts,
// off the event loop in the merge thread), the result is stored under a deterministic name and
// announced (round.merged), and every replica continues from it. A replica that re-announces a
// round already merged (it moved or reconnected) is simply sent the result.
import { errorMessage } from '../../shared/errors.ts';
import type { WorkerMessage } from '../../shared/gen/chorus/v1/worker.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import { sha256Hex } from '../../shared/digest.ts';
import { runMerge } from '../merge/pool.ts';
import type { NatsStore } from '../nats-store.ts';
import type { ClusterState } from '../state.ts';
import type { JobRecord, ShardRecord } from '../types.ts';

type AdapterReady = Extract<WorkerMessage['kind'], { $case: 'adapterReady' }>['value'];

interface Announced {
  object: string;
  sha256: string;
  step: number;
}

export class WeightRounds {
  /** `${job}/${task}/${round}` → replica → its announced adapter */
  private readonly announced = new Map<string, Map<number, Announced>>();
  private readonly merging = new Set<string>();

  constructor(private readonly state: ClusterState) {}

  async adapterReady(workerId: string, a: AdapterReady): Promise<void> {
    const { state } = this;
    const found = state.liveShard(workerId, a.shardId, a.attempt);
    if (!found) return;
    const { job, shard } = found;
    await state.publish(
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
      this.sendMerged(job, shard, a.round);
      return;
    }
    const key = `${job.id}/${shard.task}/${a.round}`;
    const parts = this.announced.get(key) ?? new Map<number, Announced>();
    parts.set(shard.replica, { object: a.object, sha256: a.sha256, step: a.step });
    this.announced.set(key, parts);
    if (parts.size < shard.replicas || this.merging.has(key)) return;
    this.merging.add(key);
    try {
      const inOrder = [...parts.entries()].sort((x, y) => x[0] - y[0]).map(([, p]) => p);
      const method = job.spec.sync.mode === 'weights' ? job.spec.sync.method : 'mean';
      const merged = await reconcileRound(state.store, job.id, shard.task, a.round, inOrder, method);
      job.rounds[shard.task] = { round: a.round, step: a.step, object: merged.name, sha256: merged.sha256 };
      this.announced.delete(key);
      await state.saveJob(job);
      await state.publish(
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
      for (const s of job.shards) if (s.task === shard.task) this.sendMerged(job, s, a.round);
    } catch (err) {
      await state.endJob(job, 'failed', `round ${a.round} of task ${shard.task}: ${errorMessage(err)}`, 'job failed');
    } finally {
      this.merging.delete(key);
    }
  }

  private sendMerged(job: JobRecord, shard: ShardRecord, round: number): void {
    const r = job.rounds[shard.task];
    if (!r || !shard.workerId) return;
    this.state.send(shard.workerId, {
      kind: {
        $case: 'roundMerged',
        value: { shardId: shard.id, round, step: r.step, object: r.object, sha256: r.sha256 },
      },
    });
  }
}

/** Reconciles exactly the adapters the replicas announced; idempotent (a restart mid-round merges once). */
export async function reconcileRound(
  store: NatsStore,
  jobId: string,
  task: string,
  round: number,
  parts: Array<{ object: string; sha256: string }>,
  method: 'mean' | 'cat_svd',
): Promise<{ name: string; size: number; sha256: string }> {
  const name = objectNames.roundMerged(jobId, task, round);
  const existing = await store.getObject(name);
  if (existing) return { name, size: existing.length, sha256: sha256Hex(existing) };
  const replicas = await Promise.all(parts.map(({ object, sha256 }) => store.getAnnounced(object, sha256)));
  const labels = parts.map((o) => o.object);
  return store.putObject(name, await runMerge({ kind: 'reconcile', adapters: replicas, labels, options: { method } }));
}
