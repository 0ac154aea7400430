// The node agent (`chorus worker`): dials out to the coordinator, registers its devices, heartbeats,
// and reconnects with backoff when the stream breaks (runners keep training meanwhile; what must not
// be lost is re-sent). The shards it runs are the supervisor's (shards.ts), evaluations the
// evaluator's (evals.ts).
import { randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ChorusClient,
  grpcCredentials,
  WORKER_ID_HEADER,
  WORKER_SECRET_HEADER,
  type ClientOptions,
} from '../shared/client/index.ts';
import { ChorusError } from '../shared/errors.ts';
import { WorkerServiceClient, type CoordinatorMessage, type WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import { BlobTransfer } from './blobs.ts';
import { DataRoots } from './data-roots.ts';
import type { DeviceSpec } from './devices.ts';
import { Evaluator } from './evals.ts';
import { RunnerHost } from './runner/host.ts';
import { ShardSupervisor } from './shards.ts';

export interface AgentOptions {
  coordinator: string;
  token?: string;
  tls?: ClientOptions['tls'];
  name: string;
  devices: DeviceSpec[];
  backend?: string;
  /** Where uploaded job inputs (chorus-object:// URIs) are cached; default ~/.cache/chorus. */
  cacheDir?: string;
  /** Directories job inputs may be read from (default: the working directory); the cache is always allowed. */
  dataRoots?: string[];
  log?: (line: string) => void;
}

const STREAM_MAX = 256 << 20;

export class WorkerAgent {
  private readonly rpc: WorkerServiceClient;
  private readonly blobs: BlobTransfer;
  private readonly host: RunnerHost;
  private readonly shards: ShardSupervisor;
  private readonly evaluator: Evaluator;
  private readonly log: (l: string) => void;
  private call: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage> | null = null;
  private workerId: string;
  /** Issued by the coordinator with our id: proves later registrations under that id are ours. */
  private secret = '';
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
    // Blob calls name this worker and prove it (the coordinator lets a worker write only its shards' objects).
    const client = new ChorusClient({
      address: opts.coordinator,
      token: opts.token,
      tls: opts.tls,
      metadata: () => ({ [WORKER_ID_HEADER]: this.workerId, [WORKER_SECRET_HEADER]: this.secret }),
    });
    this.blobs = new BlobTransfer(client, this.log, () => this.stopping);
    this.host = new RunnerHost(opts.devices.filter((d) => d.kind === 'cpu').length);
    const cacheDir = opts.cacheDir ?? join(homedir(), '.cache', 'chorus');
    const roots = new DataRoots([...(opts.dataRoots?.length ? opts.dataRoots : [process.cwd()]), cacheDir]);
    const runners = { devices: opts.devices, backend: opts.backend, cacheDir, roots };
    const send = (msg: WorkerMessage, important?: boolean) => this.send(msg, important);
    this.shards = new ShardSupervisor(runners, this.host, this.blobs, send, this.log);
    this.evaluator = new Evaluator(runners, this.host, this.blobs, send, this.log);
    this.ready = new Promise((r) => (this.connectedOnce = r));
    this.fatal = new Promise<never>((_, reject) => (this.onFatal = reject));
    this.fatal.catch(() => undefined);
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
        const hint = '--token / CHORUS_WORKER_TOKEN must be the worker token';
        this.onFatal(new ChorusError(`the coordinator refused this worker: ${err.details} (${hint})`));
        return;
      }
      if (!this.stopping)
        this.log(`worker: stream to ${this.opts.coordinator} broke: ${err.details || err.message}; reconnecting`);
      this.reconnect();
    });
    call.on('end', () => {
      if (this.call === call) this.reconnect();
    });
    const devices = this.opts.devices.map(({ id, kind, description, memoryBytes }) => ({
      id,
      kind,
      description,
      memoryBytes,
      engine: this.opts.backend ?? '',
    }));
    call.write({
      kind: {
        $case: 'register',
        value: {
          name: this.opts.name,
          devices,
          workerId: this.workerId,
          // Evaluations too, so a coordinator that does not know them (it restarted) cancels them.
          running: [...this.shards.list(), ...this.evaluator.list()],
          secret: this.secret,
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

  /** `important` messages wait in the outbox while the stream is down; others are dropped. */
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
        this.secret = k.value.secret;
        this.registered = true;
        this.backoffMs = 250;
        const devices = this.opts.devices.map((d) => d.id).join(', ');
        this.log(`worker ${this.opts.name}: registered as ${this.workerId} with ${devices}`);
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => this.send({ kind: { $case: 'heartbeat', value: { timeMs: Date.now() } } }),
          k.value.heartbeatIntervalMs || 1000,
        );
        for (const m of this.outbox.splice(0)) this.send(m);
        for (const m of this.shards.unanswered()) this.send(m);
        this.connectedOnce?.();
        return;
      }
      case 'assign':
        void this.shards.assign(k.value);
        return;
      case 'cancel':
        // The id names a shard or an evaluation request (`<job>-eval-…`).
        if (!this.evaluator.cancel(k.value.shardId, k.value.reason))
          this.shards.cancel(k.value.shardId, k.value.reason);
        return;
      case 'gradientSum':
        this.shards.gradientSum(k.value);
        return;
      case 'roundMerged':
        this.shards.roundMerged(k.value);
        return;
      case 'eval':
        void this.evaluator.evaluate(k.value);
        return;
    }
  }

  /** SIGTERM: every runner finishes its step and checkpoints, then we say goodbye and leave. */
  async stop(reason = 'worker shutting down'): Promise<void> {
    if (this.stopping) return;
    await this.shards.stopAll(reason);
    this.evaluator.killAll();
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
