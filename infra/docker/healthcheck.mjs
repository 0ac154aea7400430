#!/usr/bin/env node
// Docker HEALTHCHECK (and the Kubernetes exec probe when the coordinator serves TLS, which the
// kubelet's own gRPC probe cannot speak): one call to the standard gRPC health service
// (grpc.health.v1.Health/Check, service ""), which the coordinator answers without a token.
//   node healthcheck.mjs [host:port] [--tls-ca file]     exit 0 = SERVING
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

const args = process.argv.slice(2);
const caAt = args.indexOf('--tls-ca');
const ca = caAt >= 0 ? readFileSync(args.splice(caAt, 2)[1]) : null;
const address = args[0] ?? '127.0.0.1:7070';
const creds = ca ? grpc.credentials.createSsl(ca) : grpc.credentials.createInsecure();
const client = new grpc.Client(address, creds);
// HealthCheckRequest{service: ""} is the empty message; the answer's field 1 is the status enum.
const SERVING = 1;
client.makeUnaryRequest(
  '/grpc.health.v1.Health/Check',
  (req) => req,
  (buf) => buf,
  Buffer.alloc(0),
  { deadline: Date.now() + 3000 },
  (err, res) => {
    client.close();
    if (err) {
      console.error(`health: ${address}: ${err.details || err.message}`);
      process.exit(1);
    }
    const status = res.length >= 2 && res[0] === 0x08 ? res[1] : 0;
    if (status !== SERVING) {
      console.error(`health: ${address} answers status ${status}, not SERVING`);
      process.exit(1);
    }
    process.exit(0);
  },
);
