// The coordinator's gRPC server: JobService (clients: jobs.ts, blobs.ts), WorkerService (node agents:
// workers.ts) and the standard health service. Every handler authorises first (auth.ts).
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { readPem } from '../../shared/client/tls.ts';
import { ChorusError } from '../../shared/errors.ts';
import { JobServiceService } from '../../shared/gen/chorus/v1/jobs.ts';
import { WorkerServiceService } from '../../shared/gen/chorus/v1/worker.ts';
import type { Coordinator } from '../coordinator.ts';
import type { Authenticator } from './auth.ts';
import { blobHandlers } from './blobs.ts';
import { jobHandlers } from './jobs.ts';
import { workerHandlers } from './workers.ts';

/** The one large message is a gradient part of a big adapter (blobs travel in 1 MiB chunks). */
const SERVER_MAX_RECEIVE = 256 << 20;

export interface TlsOptions {
  cert: string;
  key: string;
  /** CA that signs worker client certificates: turns on mTLS (required client certificates). */
  ca?: string;
}

export function createServer(coord: Coordinator, auth: Authenticator): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': SERVER_MAX_RECEIVE,
    'grpc.max_send_message_length': SERVER_MAX_RECEIVE,
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  server.addService(JobServiceService, { ...jobHandlers(coord, auth), ...blobHandlers(coord, auth) });
  server.addService(WorkerServiceService, workerHandlers(coord, auth));
  const health = new HealthImplementation({
    '': 'SERVING',
    'chorus.v1.JobService': 'SERVING',
    'chorus.v1.WorkerService': 'SERVING',
  });
  health.addToServer(server);
  return server;
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
