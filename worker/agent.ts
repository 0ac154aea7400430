// The node agent (`chorus worker`): dials out to the coordinator, registers its devices, heartbeats,
// runs one runner per device, relays what runners report, and reconnects with backoff when the
// stream breaks (runners keep training meanwhile; what must not be lost is re-sent).
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ChorusClient, grpcCredentials, type ClientOptions } from '../shared/client/index.ts';
import { sha256Hex } from '../shared/digest.ts';
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { WorkerServiceClient, type CoordinatorMessage, type WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import { roundObject, type EvalPlan, type RunnerToHost, type ShardPlan } from './protocol.ts';
import { RunnerHost, type RunnerHandle } from './runner-host.ts';
import type { DeviceSpec } from './devices.ts';
import { materialiseTask } from './inputs.ts';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface AgentOptions {
  coordinator: string;
  token?: string;
  tls?: ClientOptions['tls'];
  name: string;
  devices: DeviceSpec[];
  backend?: string;
  /** Where uploaded job inputs (chorus-object:// URIs) are cached; default ~/.cache/chorus. */
  cacheDir?: string;
  log?: (line: string) => void;
}

interface RunningShard {
  plan: ShardPlan;
  jobId: string;
  device: string;
  /** The coordinator's placement number, echoed in every report. */
  attempt: number;
  handle: RunnerHandle;
  step: number;
  /** Last gradient part / adapter-ready still waiting for its answer: re-sent after a reconnect. */
  pending: WorkerMessage | null;
  /** Per-shard queue, so uploads finish before the message that names them goes out. */
  chain: Promise<void>;
}

const STREAM_MAX = 256 << 20;
/** How long blob transfers keep retrying while the coordinator is away (e.g. restarting). */
const RETRY_FOR_MS = 120_000;

export class WorkerAgent {
  private readonly rpc: WorkerServiceClient;
  private readonly blobs: ChorusClient;
  private readonly host: RunnerHost;
  private readonly shards = new Map<string, RunningShard>();
  private readonly evals = new Map<string, { handle: RunnerHandle; device: string }>();
  private readonly log: (l: string) => void;
  private call: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage> | null = null;
  private workerId: string;
  private registered = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private stopping = false;
  private backoffMs = 250;
  private readonly outbox: WorkerMessage[] = [];
  private connectedOnce: (() => void) | null = null;
  readonly ready: Promise<void>;
  /** Rejects when the worker cannot go on (refused credentials). */
  readonly fatal: Promise<never>;
  private onFatal: (err: Error) => void = () => {};
  private readonly cacheDir: string;
  private readonly fetchObject = async (name: string) => new Uint8Array(await this.download(name));

  constructor(readonly opts: AgentOptions) {
    this.log = opts.log ?? ((l) => console.error(l));
    this.workerId = `${opts.name.replace(/[^A-Za-z0-9_-]/g, '-')}-${randomBytes(3).toString('hex')}`;
    this.rpc = new WorkerServiceClient(opts.coordinator, grpcCredentials(opts.tls), {
      'grpc.max_receive_message_length': STREAM_MAX,
      'grpc.max_send_message_length': STREAM_MAX,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.blobs = new ChorusClient({ address: opts.coordinator, token: opts.token, tls: opts.tls });
    this.host = new RunnerHost(opts.devices.filter((d) => d.kind === 'cpu').length);
    this.ready = new Promise((r) => (this.connectedOnce = r));
    this.fatal = new Promise<never>((_, reject) => (this.onFatal = reject));
    this.fatal.catch(() => undefined);
    this.cacheDir = opts.cacheDir ?? join(homedir(), '.cache', 'chorus');
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.stopping) return;
    const md = new grpc.Metadata();
    if (this.opts.token) md.set('authorization', `Bearer ${this.opts.token}`);
    const call = this.rpc.connect(md);
    this.call = call;
    this.registered = false;
    call.on('data', (msg: CoordinatorMessage) => this.onMessage(msg));
    call.on('error', (err: grpc.ServiceError) => {
      if (this.call !== call) return;
      if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED) {
        // Retrying cannot fix a wrong token: say so and let the command exit.
        this.onFatal(
          new ChorusError(
            `the coordinator refused this worker: ${err.details} (--token / CHORUS_WORKER_TOKEN must be the worker token)`,
          ),
        );
        return;
      } else if (!this.stopping)
        this.log(`worker: stream to ${this.opts.coordinator} broke: ${err.details || err.message}; reconnecting`);
      this.reconnect();
    });
    call.on('end', () => {
      if (this.call === call) this.reconnect();
    });
    call.write({
      kind: {
        $case: 'register',
        value: {
          name: this.opts.name,
          devices: this.opts.devices.map((d) => ({
            id: d.id,
            kind: d.kind,
            description: d.description,
            memoryBytes: d.memoryBytes,
          })),
          workerId: this.workerId,
          running: [...this.shards.entries()].map(([shardId, s]) => ({
            shardId,
            jobId: s.jobId,
            device: s.device,
            step: s.step,
            attempt: s.attempt,
          })),
        },
      },
    });
  }

  private reconnect(): void {
    this.call = null;
    this.registered = false;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.stopping) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 2000);
    setTimeout(() => this.connect(), delay + Math.random() * delay * 0.2);
  }

  private send(msg: WorkerMessage, important = false): void {
    if (this.call && this.registered) this.call.write(msg);
    else if (important) this.outbox.push(msg);
  }

  private onMessage(msg: CoordinatorMessage): void {
    const k = msg.kind;
    if (!k) return;
    switch (k.$case) {
      case 'registered': {
        this.workerId = k.value.workerId;
        this.registered = true;
        this.backoffMs = 250;
        this.log(
          `worker ${this.opts.name}: registered as ${this.workerId} with ${this.opts.devices.map((d) => d.id).join(', ')}`,
        );
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => this.send({ kind: { $case: 'heartbeat', value: { timeMs: Date.now() } } }),
          k.value.heartbeatIntervalMs || 1000,
        );
        for (const m of this.outbox.splice(0)) this.send(m);
        for (const s of this.shards.values()) if (s.pending) this.send(s.pending);
        this.connectedOnce?.();
        return;
      }
      case 'assign':
        void this.assign(
          k.value.jobId,
          k.value.shardId,
          k.value.device,
          k.value.plan,
          k.value.resumeObject,
          k.value.resumeStep,
          k.value.attempt,
        );
        return;
      case 'cancel': {
        const s = this.shards.get(k.value.shardId);
        if (s) {
          this.log(`worker: shard ${k.value.shardId} cancelled: ${k.value.reason}`);
          this.shards.delete(k.value.shardId);
          s.handle.kill();
        }
        return;
      }
      case 'gradientSum': {
        const s = this.shards.get(k.value.shardId);
        if (!s) return;
        if (s.pending?.kind?.$case === 'gradients' && s.pending.kind.value.step === k.value.step) s.pending = null;
        s.handle.send({
          type: 'gradSum',
          step: k.value.step,
          sums: new Uint8Array(k.value.gradSums),
          tokens: k.value.tokens,
          lossSum: k.value.lossSum,
        });
        return;
      }
      case 'roundMerged': {
        const s = this.shards.get(k.value.shardId);
        if (!s) return;
        const { round, object, sha256 } = k.value;
        if (s.pending?.kind?.$case === 'adapterReady' && s.pending.kind.value.round === round) s.pending = null;
        this.download(object)
          .then((bytes) => {
            // The event names the object AND its digest: a replaced or corrupted object must not be trained on.
            const got = sha256Hex(bytes);
            if (sha256 && got !== sha256)
              throw new Error(`object ${object} has SHA-256 ${got}, the coordinator announced ${sha256}`);
            s.handle.send({ type: 'roundMerged', round, adapter: new Uint8Array(bytes) });
          })
          .catch((err) => this.fail(k.value.shardId, `downloading round ${round}: ${errorMessage(err)}`));
        return;
      }
      case 'eval':
        void this.evaluate(k.value.requestId, k.value.plan);
        return;
    }
  }

  private async assign(
    jobId: string,
    shardId: string,
    device: string,
    planJson: string,
    resumeObject: string,
    resumeStep: number,
    attempt: number,
  ): Promise<void> {
    const spec = this.opts.devices.find((d) => d.id === device);
    if (!spec) {
      this.send(
        { kind: { $case: 'shardFailed', value: { shardId, error: `no device ${device} on this worker`, attempt } } },
        true,
      );
      return;
    }
    const plan = JSON.parse(planJson) as ShardPlan;
    const previous = this.shards.get(shardId);
    if (previous) {
      // Placed here again (the coordinator restarted and lost track): the new placement wins.
      this.shards.delete(shardId);
      previous.handle.kill();
    }
    let checkpoint: Uint8Array | null = null;
    try {
      if (resumeObject) checkpoint = new Uint8Array(await this.download(resumeObject));
      plan.resolved = await materialiseTask(plan.resolved, this.cacheDir, this.fetchObject);
    } catch (err) {
      this.send(
        {
          kind: {
            $case: 'shardFailed',
            value: { shardId, error: `cannot fetch inputs of ${shardId}: ${errorMessage(err)}`, attempt },
          },
        },
        true,
      );
      return;
    }
    this.log(
      `worker: shard ${shardId} (${plan.task} replica ${plan.replica + 1}/${plan.replicas}) on ${device}${resumeObject ? `, resuming at step ${resumeStep}` : ''}`,
    );
    const entry: RunningShard = {
      plan,
      jobId,
      device,
      attempt,
      step: resumeStep,
      pending: null,
      chain: Promise.resolve(),
      handle: null as unknown as RunnerHandle,
    };
    this.shards.set(shardId, entry);
    let lastWord: () => void = () => {};
    const said = new Promise<void>((r) => (lastWord = r));
    entry.handle = this.host.start(spec, (m) => {
      if (m.type === 'done' || m.type === 'failed' || m.type === 'stopped') lastWord();
      entry.chain = entry.chain
        .then(() => this.fromRunner(shardId, entry, m))
        .catch((err) => this.fail(shardId, errorMessage(err)));
    });
    entry.handle.send({ type: 'start', plan, resume: { step: resumeStep, checkpoint }, backend: this.opts.backend });
    void entry.handle.ended.then(async () => {
      // The runner's last message and the end of its task travel separately: wait for the former
      // a moment; a runner that ended without one crashed.
      const spoke = await Promise.race([
        said.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
      ]);
      if (!spoke && this.shards.get(shardId) === entry)
        this.fail(shardId, 'runner ended without finishing, failing or stopping');
    });
  }

  private async upload(name: string, data: Uint8Array): Promise<{ sha256: string; size: number }> {
    const info = await this.retrying(`upload ${name}`, () => this.blobs.uploadBlob(name, data));
    return { sha256: info.sha256 || sha256Hex(data), size: data.length };
  }

  private download(name: string): Promise<Buffer> {
    return this.retrying(`download ${name}`, () => this.blobs.downloadBlob(name));
  }

  /** Blob calls outlive a coordinator restart: retried while the coordinator is unreachable. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + RETRY_FOR_MS;
    for (let delay = 200; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { code?: number }).code;
        const transient =
          code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.CANCELLED;
        if (!transient || this.stopping || Date.now() > deadline) throw err;
        this.log(`worker: ${what}: ${errorMessage(err)}; retrying`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async fromRunner(shardId: string, s: RunningShard, m: RunnerToHost): Promise<void> {
    if (this.shards.get(shardId) !== s) return;
    switch (m.type) {
      case 'progress':
        s.step = m.step;
        this.send({
          kind: {
            $case: 'progress',
            value: {
              shardId,
              step: m.step,
              loss: m.loss,
              lr: m.lr,
              p: m.p,
              tokens: m.tokens,
              tokensPerS: m.tokensPerSec,
              activeLayers: m.activeLayers,
              attempt: s.attempt,
              numLayers: m.numLayers,
            },
          },
        });
        return;
      case 'grads': {
        const msg: WorkerMessage = {
          kind: {
            $case: 'gradients',
            value: {
              shardId,
              step: m.step,
              gradSums: Buffer.from(m.sums.buffer, m.sums.byteOffset, m.sums.byteLength),
              tokens: m.tokens,
              lossSum: m.lossSum,
              attempt: s.attempt,
            },
          },
        };
        s.pending = msg;
        this.send(msg);
        return;
      }
      case 'roundAdapter': {
        const object = roundObject(s.plan.objects.round, m.round);
        const info = await this.upload(object, m.adapter);
        const msg: WorkerMessage = {
          kind: {
            $case: 'adapterReady',
            value: {
              shardId,
              round: m.round,
              step: m.step,
              object,
              sha256: info.sha256,
              bytes: info.size,
              attempt: s.attempt,
            },
          },
        };
        s.pending = msg;
        this.send(msg);
        return;
      }
      case 'checkpoint': {
        const info = await this.upload(s.plan.objects.checkpoint, m.data);
        this.send(
          {
            kind: {
              $case: 'checkpoint',
              value: {
                shardId,
                step: m.step,
                object: s.plan.objects.checkpoint,
                sha256: info.sha256,
                attempt: s.attempt,
              },
            },
          },
          true,
        );
        return;
      }
      case 'done': {
        const info = await this.upload(s.plan.objects.final, m.adapter);
        this.shards.delete(shardId);
        this.send(
          {
            kind: {
              $case: 'shardDone',
              value: {
                shardId,
                object: s.plan.objects.final,
                sha256: info.sha256,
                summary: JSON.stringify(m.summary),
                attempt: s.attempt,
              },
            },
          },
          true,
        );
        this.log(`worker: shard ${shardId} finished (${m.summary.steps} steps, ${m.summary.seconds.toFixed(1)} s)`);
        return;
      }
      case 'stopped':
        this.shards.delete(shardId);
        this.log(`worker: shard ${shardId} stopped at step ${m.step}`);
        return;
      case 'failed':
        this.fail(shardId, m.error);
        return;
      case 'evalDone':
        return;
    }
  }

  private fail(shardId: string, error: string): void {
    const s = this.shards.get(shardId);
    if (!s) return;
    this.shards.delete(shardId);
    s.handle.kill();
    this.log(`worker: shard ${shardId} failed: ${error}`);
    this.send({ kind: { $case: 'shardFailed', value: { shardId, error, attempt: s.attempt } } }, true);
  }

  private async evaluate(requestId: string, planJson: string): Promise<void> {
    const plan = JSON.parse(planJson) as EvalPlan & { device?: string };
    const device = this.opts.devices.find((d) => d.id === plan.device) ?? this.opts.devices[0];
    this.log(`worker: evaluating ${plan.coalitions.length} layer coalition(s) of ${plan.task.name} on ${device.id}`);
    const reply = (losses: number[], error = '') =>
      this.send({ kind: { $case: 'evalResult', value: { requestId, losses: JSON.stringify(losses), error } } }, true);
    try {
      const adapter = new Uint8Array(await this.download(plan.adapterObject));
      plan.task = await materialiseTask(plan.task, this.cacheDir, this.fetchObject);
      await new Promise<void>((resolve) => {
        const handle = this.host.start(device, (m) => {
          if (m.type === 'evalDone') reply(m.losses);
          else if (m.type === 'failed') reply([], m.error);
        });
        this.evals.set(requestId, { handle, device: device.id });
        handle.send({ type: 'eval', plan, adapter, backend: this.opts.backend });
        void handle.ended.then(resolve);
      });
    } catch (err) {
      reply([], errorMessage(err));
    } finally {
      this.evals.delete(requestId);
    }
  }

  /** SIGTERM: every runner finishes its step and checkpoints, then we say goodbye and leave. */
  async stop(reason = 'worker shutting down'): Promise<void> {
    if (this.stopping) return;
    const running = [...this.shards.values()];
    for (const s of running) s.handle.send({ type: 'stop', reason });
    await Promise.all(running.map((s) => s.handle.ended.then(() => s.chain)));
    for (const e of this.evals.values()) e.handle.kill();
    this.send({ kind: { $case: 'leaving', value: { reason } } });
    this.stopping = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    await new Promise((r) => setTimeout(r, 100));
    this.call?.end();
    this.call = null;
    await this.host.close();
    this.rpc.close();
    this.blobs.close();
  }
}
