// The TypeScript client of a Chorus coordinator — what `chorus submit/jobs/watch/...` use, and what
// programs import (`import { ChorusClient } from 'chorus'`). Bearer token as per-call metadata, so
// it works on both TLS and plaintext channels.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { sha256Hex } from '../digest.ts';
import { ChorusError } from '../errors.ts';
import { loadJobSpec } from '../job/parse.ts';
import type { JobSpec } from '../job/types.ts';
import { specToWire } from '../job/wire.ts';
import { modelSummary } from './model-summary.ts';
import {
  JobServiceClient,
  type BlobChunk,
  type BlobInfo,
  type Job,
  type JobEvent,
  type ListJobsResponse,
  type ListWorkersResponse,
  type ModelSummary,
  type SubmitJobResponse,
  type WorkerInfo,
} from '../gen/chorus/v1/jobs.ts';
import { eventFromWire, isTerminal, type ChorusEvent } from '../nats/events.ts';

export type { Job, Shard, WorkerInfo, Device, BlobInfo } from '../gen/chorus/v1/jobs.ts';
export type { ChorusEvent, EventType, EventData, JobState } from '../nats/events.ts';
export { isTerminal } from '../nats/events.ts';

export const BLOB_CHUNK = 1 << 20;
/** Metadata that names a worker agent, and proves it, on its blob calls (coordinator/rpc/object-access.ts). */
export const WORKER_ID_HEADER = 'x-chorus-worker-id';
export const WORKER_SECRET_HEADER = 'x-chorus-worker-secret';
/** Largest single message either side accepts: blobs are chunked, so this only bounds specs and lists. */
export const CLIENT_MAX_MESSAGE = 16 << 20;

export interface ClientOptions {
  /** host:port; default CHORUS_COORDINATOR or 127.0.0.1:7070. */
  address?: string;
  /** Bearer token; default CHORUS_TOKEN. */
  token?: string;
  /** TLS: true for system roots, or the PEM of the CA to trust. */
  tls?: boolean | { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Extra metadata for every call (a worker agent's id and secret on its blob calls). */
  metadata?: () => Record<string, string>;
}

export function grpcCredentials(tls: ClientOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/** gRPC status → ChorusError that keeps the code (err.code) for callers that branch on it. */
export class ChorusRpcError extends ChorusError {
  constructor(
    readonly code: grpc.status,
    details: string,
  ) {
    super(`${grpc.status[code] ?? code}: ${details}`);
  }
}

function wrap(err: unknown, address: string): Error {
  const e = err as grpc.ServiceError;
  if (!e || typeof e.code !== 'number') return err as Error;
  const details = (e.details || e.message).replace(/\s*Resolution note:\s*$/, '');
  if (e.code === grpc.status.UNAVAILABLE) {
    // The raw message only says "No connection established": name where we looked and how to point elsewhere.
    return new ChorusRpcError(
      e.code,
      `no coordinator answers at ${address} (${details}); start one with \`chorus coordinator\` or set --coordinator / CHORUS_COORDINATOR`,
    );
  }
  return new ChorusRpcError(e.code, details);
}

export class ChorusClient {
  readonly address: string;
  private readonly rpc: JobServiceClient;
  private readonly token: string | undefined;
  private readonly extra: ClientOptions['metadata'];

  constructor(options: ClientOptions = {}) {
    this.address = options.address ?? process.env.CHORUS_COORDINATOR ?? '127.0.0.1:7070';
    this.token = options.token ?? process.env.CHORUS_TOKEN ?? undefined;
    this.extra = options.metadata;
    this.rpc = new JobServiceClient(this.address, grpcCredentials(options.tls), {
      'grpc.max_receive_message_length': CLIENT_MAX_MESSAGE,
      'grpc.max_send_message_length': CLIENT_MAX_MESSAGE,
      'grpc.keepalive_time_ms': 30_000,
    });
  }

  close(): void {
    this.rpc.close();
  }

  private md(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', `Bearer ${this.token}`);
    for (const [k, v] of Object.entries(this.extra?.() ?? {})) md.set(k, v);
    return md;
  }

  private unary<Res>(
    fn: (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn(this.md(), (e, r) => (e ? reject(wrap(e, this.address)) : resolve(r)));
    });
  }

  /**
   * Submits a YAML/JSON job spec (text); resolves to the new job id. `model` (modelSummary of the base model)
   * lets the coordinator place shards by memory.
   */
  async submit(spec: string, name = '', model?: ModelSummary): Promise<string> {
    const res = await this.unary<SubmitJobResponse>((md, cb) => this.rpc.submitJob({ spec, name, model }, md, cb));
    return res.jobId;
  }

  /** Submits a parsed spec (paths must be readable by the workers, or uploaded). */
  submitSpec(spec: JobSpec, name = '', model?: ModelSummary): Promise<string> {
    return this.submit(specToWire(spec), name, model);
  }

  /**
   * Submits the spec file at `path`, validated here first, its relative paths resolved against its folder; with
   * the base model's shape when its directory is readable here.
   */
  async submitFile(path: string, name = ''): Promise<string> {
    const spec = loadJobSpec(path);
    return this.submitSpec(spec, name, await modelSummary(spec.baseModel));
  }

  get(jobId: string): Promise<Job> {
    return this.unary<Job>((md, cb) => this.rpc.getJob({ jobId }, md, cb));
  }

  /** Every job, oldest first (fetched page by page). */
  async list(): Promise<Job[]> {
    const all: Job[] = [];
    let pageToken = '';
    do {
      const res = await this.unary<ListJobsResponse>((md, cb) => this.rpc.listJobs({ pageSize: 0, pageToken }, md, cb));
      all.push(...res.jobs);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return all;
  }

  cancel(jobId: string, reason = 'cancelled by user'): Promise<Job> {
    return this.unary<Job>((md, cb) => this.rpc.cancelJob({ jobId, reason }, md, cb));
  }

  /** Every worker the coordinator knows (fetched page by page). */
  async workers(): Promise<WorkerInfo[]> {
    const all: WorkerInfo[] = [];
    let pageToken = '';
    do {
      const res = await this.unary<ListWorkersResponse>((md, cb) =>
        this.rpc.listWorkers({ pageSize: 0, pageToken }, md, cb),
      );
      all.push(...res.workers);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return all;
  }
  /** Resolves once at least `n` workers are online; rejects after `timeoutMs`. */
  async waitForWorkers(n: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const online = (await this.workers()).filter((w) => w.state === 'online');
      if (online.length >= n) return;
      if (Date.now() > deadline)
        throw new ChorusError(`only ${online.length} of ${n} workers registered within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The job's events from its first one, then live until the job ends (the iterator then returns). */
  async *watch(jobId: string, signal?: AbortSignal): AsyncGenerator<ChorusEvent> {
    const call = this.rpc.watchJob({ jobId }, this.md());
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort);
    try {
      for await (const ev of call as AsyncIterable<JobEvent>) {
        yield eventFromWire(ev);
      }
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && signal?.aborted) return;
      throw wrap(err, this.address);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Follows the job until it ends; resolves to its final record. */
  async wait(jobId: string, onEvent?: (e: ChorusEvent) => void): Promise<Job> {
    for await (const ev of this.watch(jobId)) {
      onEvent?.(ev);
      if (ev.type === 'job.state' && isTerminal(ev.data.state)) break;
    }
    return this.get(jobId);
  }

  /**
   * Stores bytes in the coordinator's object store under `name`. The coordinator streams them into
   * the store as they arrive and cannot replay them: when the store fails mid-way it answers
   * UNAVAILABLE, and the bytes are sent again (a few times, with backoff).
   */
  async uploadBlob(name: string, data: Uint8Array): Promise<BlobInfo> {
    for (let attempt = 1, wait = 250; ; attempt++, wait = Math.min(wait * 2, 4000)) {
      try {
        return await this.uploadOnce(name, data);
      } catch (err) {
        if (!(err instanceof ChorusRpcError) || err.code !== grpc.status.UNAVAILABLE || attempt >= 6) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private uploadOnce(name: string, data: Uint8Array): Promise<BlobInfo> {
    return new Promise((resolve, reject) => {
      const call = this.rpc.uploadBlob(this.md(), (e, r) => (e ? reject(wrap(e, this.address)) : resolve(r)));
      let off = 0;
      const first = true;
      const writeNext = (isFirst: boolean): void => {
        while (off < data.length || isFirst) {
          const chunk: BlobChunk = {
            name: isFirst ? name : '',
            size: isFirst ? data.length : 0,
            data: Buffer.from(data.buffer, data.byteOffset + off, Math.min(BLOB_CHUNK, data.length - off)),
            sha256: '',
          };
          off += chunk.data.length;
          isFirst = false;
          if (!call.write(chunk)) {
            call.once('drain', () => writeNext(false));
            return;
          }
        }
        call.end();
      };
      writeNext(first);
    });
  }

  /**
   * An object's bytes, checked against the SHA-256 the coordinator sends with them and, when given,
   * against `sha256` (a digest recorded when the object was written, e.g. a job's artifact digest).
   */
  async downloadBlob(name: string, sha256?: string): Promise<Buffer> {
    const call = this.rpc.downloadBlob({ name }, this.md());
    const parts: Buffer[] = [];
    let announced = '';
    try {
      for await (const chunk of call as AsyncIterable<BlobChunk>) {
        announced ||= chunk.sha256;
        parts.push(Buffer.from(chunk.data));
      }
    } catch (err) {
      throw wrap(err, this.address);
    }
    const data = Buffer.concat(parts);
    const got = sha256Hex(data);
    for (const [want, what] of [
      [announced, 'the coordinator sent with it'],
      [sha256, 'recorded when it was written'],
    ] as const)
      if (want && got !== want) throw new ChorusError(`object ${name}: SHA-256 ${got} is not the ${want} ${what}`);
    return data;
  }

  /**
   * Downloads a finished job's artifacts into `outDir`: one PEFT directory per task
   * (`<task>/adapter_model.safetensors` + `adapter_config.json`), `merged/` when the job merges,
   * and `report.json`. Returns the files written.
   */
  async downloadResult(jobId: string, outDir: string): Promise<string[]> {
    const job = await this.get(jobId);
    if (job.state !== 'succeeded')
      throw new ChorusError(
        `job ${jobId} is ${job.state}${job.reason ? ` (${job.reason})` : ''}: no result to download`,
      );
    const prefix = `jobs/${jobId}/result/`;
    const written: string[] = [];
    for (const name of job.artifacts) {
      if (!name.startsWith(prefix)) continue;
      const rel = name.slice(prefix.length);
      if (rel.split('/').some((p) => p === '..' || p === '')) throw new ChorusError(`refusing artifact name ${name}`);
      const dest = join(outDir, rel);
      const digest = job.artifactSha256[name];
      if (!digest)
        throw new ChorusError(`job ${jobId} has no recorded SHA-256 for ${name}: refusing an unverifiable result`);
      const data = await this.downloadBlob(name, digest);
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, data);
      written.push(dest);
    }
    return written;
  }
}

export { sha256Hex } from '../digest.ts';
