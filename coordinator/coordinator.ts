// The coordinator: its parts wired together, and the entry points the gRPC layer (server.ts) calls.
// All state goes to JetStream (KV, stream, object store), so a restarted coordinator carries on.
//   state.ts           jobs, workers, persistence, events, device bookkeeping
//   jobs.ts            submit, cancel, finish (→ finalize.ts: final merge and report)
//   scheduling.ts      placing shards (policy: placement.ts)
//   workers.ts         registration, heartbeats, the watchdog
//   shards.ts          progress, checkpoints, the end or loss of a shard
//   sync/gradients.ts  sync: gradients          sync/rounds.ts  sync: weights (rounds)
//   evals.ts           evaluations on workers (Shapley)
import type { WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import { Evaluations } from './evals.ts';
import { Jobs } from './jobs.ts';
import type { NatsStore } from './nats-store.ts';
import { Scheduling } from './scheduling.ts';
import { Shards } from './shards.ts';
import { ClusterState, type CoordinatorOptions, type WorkerLink } from './state.ts';
import { GradientSync } from './sync/gradients.ts';
import { WeightRounds } from './sync/rounds.ts';
import { Workers } from './workers.ts';

export type { CoordinatorOptions, WorkerLink } from './state.ts';

export class Coordinator {
  readonly state: ClusterState;
  readonly jobs: Jobs;
  private readonly scheduling: Scheduling;
  private readonly workers: Workers;
  private readonly shards: Shards;
  private readonly gradients: GradientSync;
  private readonly rounds: WeightRounds;
  private readonly evals: Evaluations;

  constructor(store: NatsStore, opts: CoordinatorOptions) {
    this.state = new ClusterState(store, opts);
    this.scheduling = new Scheduling(this.state);
    this.evals = new Evaluations(this.state);
    this.gradients = new GradientSync(this.state);
    this.rounds = new WeightRounds(this.state);
    this.jobs = new Jobs(this.state, this.evals);
    this.shards = new Shards(this.state, this.jobs, this.gradients);
    this.workers = new Workers(this.state, this.shards, this.evals);
  }

  get store(): NatsStore {
    return this.state.store;
  }

  /** Loads jobs and workers from KV (a restart), resumes unfinished merges, starts the watchdog. */
  async start(): Promise<void> {
    await this.state.load();
    this.workers.reattach();
    for (const job of this.state.jobs.values()) if (job.state === 'merging') void this.jobs.finish(job);
    this.workers.startWatchdog();
    this.state.log(`coordinator: ${this.state.jobs.size} job(s) loaded from JetStream`);
  }

  async stop(): Promise<void> {
    this.scheduling.stop();
    this.workers.stop();
    await this.state.flush();
  }

  /** Workers' and devices' current use, for ListWorkers. */
  listWorkers() {
    return [...this.state.workers.values()].map((w) => ({ record: w.record, shards: [...w.busy.values()] }));
  }

  /** One message of a worker's stream (messages of one worker are handled in order by the caller). */
  async fromWorker(link: WorkerLink, workerId: string, msg: WorkerMessage): Promise<string> {
    const k = msg.kind;
    if (!k) return workerId;
    if (k.$case === 'register') return this.workers.register(link, k.value);
    if (!workerId) return workerId;
    this.workers.heartbeat(workerId);
    switch (k.$case) {
      case 'heartbeat':
        break;
      case 'progress':
        await this.shards.progress(workerId, k.value);
        break;
      case 'gradients':
        await this.gradients.gradients(workerId, k.value);
        break;
      case 'adapterReady':
        await this.rounds.adapterReady(workerId, k.value);
        break;
      case 'checkpoint':
        await this.shards.checkpoint(workerId, k.value);
        break;
      case 'shardDone':
        await this.shards.done(workerId, k.value);
        break;
      case 'shardFailed':
        await this.shards.failed(workerId, k.value);
        break;
      case 'evalResult':
        this.evals.result(workerId, k.value);
        break;
      case 'leaving':
        await this.workers.leaving(workerId, k.value.reason || 'leaving');
        break;
    }
    return workerId;
  }

  /** The worker's stream ended; the watchdog declares it dead unless it comes back in time. */
  disconnected(workerId: string, link: WorkerLink): void {
    this.workers.disconnected(workerId, link);
  }
}
