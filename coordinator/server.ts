// gRPC plumbing: JobService (clients), WorkerService (node agents), the standard health service.
// Every handler authorises first. Errors leave as gRPC statuses: bad specs INVALID_ARGUMENT (the
// message names the field), unknown ids NOT_FOUND, auth UNAUTHENTICATED / PERMISSION_DENIED.
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { isTerminal } from '../shared/nats/events.ts';
import {
  JobServiceService,
  type BlobChunk,
  type Job,
  type JobEvent,
  type JobServiceServer,
} from '../shared/gen/chorus/v1/jobs.ts';
import {
  WorkerServiceService,
  type CoordinatorMessage,
  type WorkerMessage,
  type WorkerServiceServer,
} from '../shared/gen/chorus/v1/worker.ts';
import { AuthError, type Authenticator, type Role } from './auth.ts';
import { readPem } from '../shared/client/tls.ts';
import { NotFound, type Coordinator, type WorkerLink } from './coordinator.ts';
import type { JobRecord } from './types.ts';

/** Blob chunks are at most 1 MiB; the one large message is a gradient part of a big adapter. */
export const MAX_BLOB_CHUNK = 1 << 20;
export const SERVER_MAX_RECEIVE = 256 << 20;
/** An upload is buffered in memory before it enters the object store: cap it (RESOURCE_EXHAUSTED past it). */
export const MAX_BLOB_BYTES = 2 ** 31;

export interface TlsOptions {
  cert: string;
  key: string;
  /** CA that signs worker client certificates: turns on mTLS (required client certificates). */
  ca?: string;
}

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof AuthError) return { code: err.code, details: err.message };
  if (err instanceof NotFound) return { code: grpc.status.NOT_FOUND, details: err.message };
  if (err instanceof ChorusError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  return { code: grpc.status.INTERNAL, details: errorMessage(err) };
}

export function jobToProto(job: JobRecord): Job {
  return {
    id: job.id,
    name: job.name,
    state: job.state,
    reason: job.reason,
    spec: job.specText,
    createdMs: job.createdMs,
    updatedMs: job.updatedMs,
    shards: job.shards.map((s) => ({
      id: s.id,
      task: s.task,
      replica: s.replica,
      replicas: s.replicas,
      state: s.state,
      workerId: s.workerId,
      device: s.device,
      step: s.step,
      totalSteps: s.totalSteps,
      loss: Number.isFinite(s.loss) ? s.loss : 0,
      attempts: s.attempts,
    })),
    artifacts: job.artifacts,
  };
}

export function createServer(coord: Coordinator, auth: Authenticator): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': SERVER_MAX_RECEIVE,
    'grpc.max_send_message_length': SERVER_MAX_RECEIVE,
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const check = (md: grpc.Metadata, roles: readonly Role[]) => auth.authorize(md, roles);

  function unary<Req, Res>(
    roles: readonly Role[],
    fn: (req: Req) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, cb) => {
      try {
        check(call.metadata, roles);
      } catch (err) {
        cb(toStatus(err) as grpc.ServiceError);
        return;
      }
      Promise.resolve()
        .then(() => fn(call.request))
        .then((res) => cb(null, res))
        .catch((err) => cb(toStatus(err) as grpc.ServiceError));
    };
  }

  const jobs: JobServiceServer = {
    submitJob: unary(['client'], async (req) => {
      const job = await coord.submit(req.spec, req.name);
      return { jobId: job.id, state: job.state };
    }),
    getJob: unary(['client'], (req) => jobToProto(coord.getJob(req.jobId))),
    listJobs: unary(['client'], () => ({
      jobs: [...coord.jobs.values()].sort((a, b) => a.createdMs - b.createdMs).map(jobToProto),
    })),
    cancelJob: unary(['client'], async (req) =>
      jobToProto(await coord.cancel(req.jobId, req.reason || 'cancelled by user')),
    ),
    listWorkers: unary(['client'], () => ({
      workers: coord.listWorkers().map(({ record, shards }) => ({
        id: record.id,
        name: record.name,
        state: record.state,
        devices: record.devices,
        lastHeartbeatMs: record.lastHeartbeatMs,
        shards,
      })),
    })),
    watchJob: (call) => {
      void (async () => {
        try {
          check(call.metadata, ['client']);
          const job = coord.getJob(call.request.jobId);
          const ac = new AbortController();
          call.on('cancelled', () => ac.abort());
          call.on('close', () => ac.abort());
          for await (const ev of coord.store.events(coord.store.names.jobFilter(job.id), ac.signal)) {
            const out: JobEvent = {
              seq: ev.seq ?? 0,
              subject: coord.store.names.jobEvent(job.id, ev.type),
              type: ev.type,
              jobId: job.id,
              timeMs: ev.timeMs,
              data: JSON.stringify(ev.data),
            };
            if (!call.write(out))
              await new Promise<void>((r) => {
                call.once('drain', r);
                call.once('cancelled', r);
              });
            if (ac.signal.aborted) return;
            if (ev.type === 'job.state' && isTerminal(ev.data.state)) break;
          }
          call.end();
        } catch (err) {
          call.emit('error', toStatus(err));
        }
      })();
    },
    uploadBlob: (call, cb) => {
      let role: Role | null;
      try {
        role = check(call.metadata, ['client', 'worker']);
      } catch (err) {
        cb(toStatus(err) as grpc.ServiceError);
        return;
      }
      const parts: Buffer[] = [];
      let name = '';
      let size = 0;
      let failed = false;
      call.on('data', (chunk: BlobChunk) => {
        if (failed) return;
        if (!name) name = chunk.name;
        if (chunk.data.length > MAX_BLOB_CHUNK) {
          failed = true;
          parts.length = 0;
          cb({
            code: grpc.status.INVALID_ARGUMENT,
            details: `blob chunk of ${chunk.data.length} bytes exceeds ${MAX_BLOB_CHUNK}`,
          } as grpc.ServiceError);
          return;
        }
        if (size + chunk.data.length > MAX_BLOB_BYTES) {
          failed = true;
          parts.length = 0;
          cb({
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: `blob "${name}" exceeds ${MAX_BLOB_BYTES} bytes`,
          } as grpc.ServiceError);
          return;
        }
        size += chunk.data.length;
        parts.push(Buffer.from(chunk.data));
      });
      // A client that goes away mid-upload leaves nothing buffered behind.
      call.on('cancelled', () => {
        failed = true;
        parts.length = 0;
      });
      call.on('end', () => {
        if (failed) return;
        if (!validObjectName(name)) {
          cb({
            code: grpc.status.INVALID_ARGUMENT,
            details: `blob name: "${name}" is not a valid object name`,
          } as grpc.ServiceError);
          return;
        }
        // Clients add job inputs; workers write job outputs. Neither may overwrite the other's.
        const area = role === 'worker' ? 'jobs/' : 'uploads/';
        if (role && !name.startsWith(area)) {
          cb({
            code: grpc.status.PERMISSION_DENIED,
            details: `a ${role} token may only upload under ${area} (got "${name}")`,
          } as grpc.ServiceError);
          return;
        }
        coord.store
          .putObject(name, Buffer.concat(parts, size))
          .then((info) => cb(null, info))
          .catch((err) => cb(toStatus(err) as grpc.ServiceError));
      });
    },
    downloadBlob: (call) => {
      void (async () => {
        try {
          check(call.metadata, ['client', 'worker']);
          const data = await coord.store.getObject(call.request.name);
          if (!data) throw new NotFound(`no object named "${call.request.name}"`);
          for (let off = 0; off < data.length || off === 0; off += MAX_BLOB_CHUNK) {
            const piece = data.subarray(off, off + MAX_BLOB_CHUNK);
            const ok = call.write({
              name: off === 0 ? call.request.name : '',
              size: off === 0 ? data.length : 0,
              data: Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength),
            });
            if (!ok)
              await new Promise<void>((r) => {
                call.once('drain', r);
                call.once('cancelled', r);
              });
            if (data.length === 0) break;
          }
          call.end();
        } catch (err) {
          call.emit('error', toStatus(err));
        }
      })();
    },
  };

  const workers: WorkerServiceServer = {
    connect: (call) => {
      try {
        check(call.metadata, ['worker']);
      } catch (err) {
        call.emit('error', toStatus(err));
        return;
      }
      let workerId = '';
      const link: WorkerLink = {
        send: (msg: CoordinatorMessage) => {
          if (!call.writable || call.destroyed) return;
          call.write(msg);
        },
        close: () => {
          if (!call.destroyed) call.end();
        },
      };
      const queue: WorkerMessage[] = [];
      let busy = false;
      // Messages of one worker are handled in order (a step's gradients after its progress).
      const pump = async () => {
        if (busy) return;
        busy = true;
        while (queue.length) {
          const msg = queue.shift()!;
          try {
            await handle(msg);
          } catch (err) {
            coord.opts.log(`worker ${workerId}: ${msg.kind?.$case}: ${errorMessage(err)}`);
          }
        }
        busy = false;
      };
      const handle = async (msg: WorkerMessage) => {
        const k = msg.kind;
        if (!k) return;
        if (k.$case === 'register') {
          workerId = await coord.register(link, k.value);
          return;
        }
        if (!workerId) return;
        coord.heartbeat(workerId);
        switch (k.$case) {
          case 'heartbeat':
            return;
          case 'progress':
            return coord.progress(workerId, k.value);
          case 'gradients':
            return coord.gradients(workerId, k.value);
          case 'adapterReady':
            return coord.adapterReady(workerId, k.value);
          case 'checkpoint':
            return coord.checkpoint(workerId, k.value);
          case 'shardDone':
            return coord.shardDone(workerId, k.value);
          case 'shardFailed':
            return coord.shardFailed(workerId, k.value);
          case 'evalResult':
            return coord.evalResult(workerId, k.value);
          case 'leaving':
            return coord.leaving(workerId, k.value.reason || 'leaving');
        }
      };
      call.on('data', (msg: WorkerMessage) => {
        queue.push(msg);
        void pump();
      });
      const gone = () => {
        if (workerId) coord.disconnected(workerId, link);
      };
      call.on('end', () => {
        gone();
        if (!call.destroyed) call.end();
      });
      call.on('error', gone);
      call.on('cancelled', gone);
    },
  };

  server.addService(JobServiceService, jobs);
  server.addService(WorkerServiceService, workers);
  const health = new HealthImplementation({
    '': 'SERVING',
    'chorus.v1.JobService': 'SERVING',
    'chorus.v1.WorkerService': 'SERVING',
  });
  health.addToServer(server);
  return server;
}

function validObjectName(name: string): boolean {
  return name.length > 0 && name.length < 512 && !name.split('/').some((p) => p === '' || p === '.' || p === '..');
}

export function serverCredentials(tls: TlsOptions | null): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const ca = tls.ca ? readPem(tls.ca, '--tls-ca') : null;
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readPem(tls.cert, '--tls-cert'), private_key: readPem(tls.key, '--tls-key') }],
    !!ca,
  );
}

export function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) =>
      err ? reject(new ChorusError(`cannot listen on ${address}: ${err.message}`)) : resolve(port),
    );
  });
}
