// Prometheus metrics folded from the event stream (prom-client, own registry so several servers in
// one process — tests — do not collide). Per-shard series carry {job, task, replica}; a job's series
// are dropped when the dashboard forgets the job, so cardinality stays bounded.
import client from 'prom-client';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import { JOB_STATES } from '../../shared/nats/events.ts';
import type { ClusterView } from './views.ts';

export class ChorusMetrics {
  readonly registry = new client.Registry();
  private readonly jobs = new client.Gauge({
    name: 'chorus_jobs',
    help: 'Jobs by state',
    labelNames: ['state'],
    registers: [this.registry],
  });
  private readonly workers = new client.Gauge({
    name: 'chorus_workers_alive',
    help: 'Workers whose last state is online',
    registers: [this.registry],
  });
  private readonly steps = new client.Counter({
    name: 'chorus_steps_total',
    help: 'Optimiser steps completed by all replicas',
    registers: [this.registry],
  });
  private readonly tokens = new client.Counter({
    name: 'chorus_tokens_total',
    help: 'Training tokens processed by all replicas',
    registers: [this.registry],
  });
  private readonly events = new client.Counter({
    name: 'chorus_events_total',
    help: 'Events seen, by type',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly shardLabels = ['job', 'task', 'replica'] as const;
  private readonly step = new client.Gauge({
    name: 'chorus_shard_step',
    help: 'Last optimiser step of a replica',
    labelNames: this.shardLabels,
    registers: [this.registry],
  });
  private readonly loss = new client.Gauge({
    name: 'chorus_shard_loss',
    help: 'Last training loss of a replica',
    labelNames: this.shardLabels,
    registers: [this.registry],
  });
  private readonly tps = new client.Gauge({
    name: 'chorus_shard_tokens_per_second',
    help: 'Training throughput of a replica',
    labelNames: this.shardLabels,
    registers: [this.registry],
  });
  private readonly coto = new client.Gauge({
    name: 'chorus_shard_coto_p',
    help: 'CoTo activation probability p(t) of a replica',
    labelNames: this.shardLabels,
    registers: [this.registry],
  });
  private readonly lastStep = new Map<string, { step: number; tokens: number }>();
  private readonly shardKeys = new Map<string, Set<string>>();

  constructor(private readonly view: ClusterView) {
    for (const s of JOB_STATES) this.jobs.set({ state: s }, 0);
    this.workers.set(0);
  }

  ingest(ev: ChorusEvent): void {
    this.events.inc({ type: ev.type });
    if (ev.type !== 'metrics' || !ev.jobId) return;
    const d = ev.data;
    const labels = { job: ev.jobId, task: d.task, replica: String(d.replica) };
    const key = `${ev.jobId}/${d.shardId}`;
    const prev = this.lastStep.get(key);
    // Replayed or resumed steps are not counted twice.
    if (!prev || d.step > prev.step) {
      this.steps.inc(prev ? d.step - prev.step : 1);
      if (d.tokens > (prev?.tokens ?? 0)) this.tokens.inc(d.tokens - (prev?.tokens ?? 0));
      this.lastStep.set(key, { step: d.step, tokens: d.tokens });
    }
    this.step.set(labels, d.step);
    this.loss.set(labels, d.loss);
    this.tps.set(labels, d.tokensPerSec);
    this.coto.set(labels, d.p);
    const keys = this.shardKeys.get(ev.jobId) ?? new Set<string>();
    keys.add(JSON.stringify(labels));
    this.shardKeys.set(ev.jobId, keys);
  }

  /** Gauges that are counts over the whole view are recomputed at scrape time. */
  async render(): Promise<string> {
    const counts = new Map<string, number>(JOB_STATES.map((s) => [s, 0]));
    for (const job of this.view.jobs.values()) if (job.state) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
    for (const [state, n] of counts) this.jobs.set({ state }, n);
    this.workers.set(this.view.workersAlive());
    for (const [jobId, keys] of this.shardKeys) {
      if (this.view.jobs.has(jobId)) continue;
      for (const k of keys) {
        const labels = JSON.parse(k) as Record<string, string>;
        for (const g of [this.step, this.loss, this.tps, this.coto]) g.remove(labels);
      }
      this.shardKeys.delete(jobId);
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
