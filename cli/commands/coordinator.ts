// `chorus coordinator`: runs the cluster's coordinator until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { ChorusError } from '../../shared/errors.ts';
import { parsePositiveInt } from './flags.ts';
import { DEFAULT_TOKEN_FILE, parseBytes, parseDuration, startCoordinator } from '../../coordinator/main.ts';
import { jetStreamEvents, startHttpServer } from '../../coordinator/http/index.ts';

export function register(program: Command): void {
  program
    .command('coordinator')
    .description('run the coordinator (gRPC API, scheduler, merges; state in NATS JetStream)')
    .option('--listen <addr>', 'host:port to serve gRPC on', '127.0.0.1:7070')
    .option(
      '--nats <url>',
      'NATS server(s) with JetStream, comma-separated for a cluster (default NATS_URL or nats://127.0.0.1:4222)',
    )
    .option('--nats-creds <file>', 'NATS credentials file (.creds)')
    .option('--nats-token <token>', 'NATS auth token (or NATS_TOKEN)')
    .option('--nats-user <user>', 'NATS user (password from NATS_PASSWORD)')
    .option('--prefix <name>', 'prefix of NATS streams, buckets and subjects', 'chorus')
    .option('--nats-replicas <n>', 'replicas of every NATS stream, bucket and the object store (3 on a cluster)', '1')
    .option('--events-max-age <duration>', 'drop events older than this (e.g. 30d; default: keep)')
    .option('--events-max-bytes <size>', 'keep at most this much of the events stream, oldest dropped (e.g. 1GB)')
    .option('--artifacts-ttl <duration>', "delete a finished job's objects this long after it ends (e.g. 7d)")
    .option('--client-token <token>', 'bearer token of the client role (or CHORUS_CLIENT_TOKEN)')
    .option('--worker-token <token>', 'bearer token of the worker role (or CHORUS_WORKER_TOKEN)')
    .option('--token-file <file>', 'where generated tokens are kept (mode 0600)', DEFAULT_TOKEN_FILE)
    .option('--insecure-no-auth', 'accept every call without a token (local play only)')
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert')
    .option('--tls-ca <file>', 'require client certificates signed by this CA (mTLS)')
    .option('--heartbeat-timeout <duration>', 'declare a silent worker dead after this long', '5s')
    .option('--max-failures <n>', "failures of a shard's own run (not lost workers) before its job fails", '4')
    .option(
      '--stall-timeout <duration>',
      'fail a job whose shards keep losing their workers without a step for this long',
      '10m',
    )
    .option(
      '--http <addr>',
      'serve the dashboard and Prometheus /metrics on host:port (the client token or --http-token opens it; TLS with --tls-*)',
    )
    .option('--http-token <token>', 'a read-only token that opens only the dashboard (or CHORUS_HTTP_TOKEN)')
    .action(async (o) => {
      if (!!o.tlsCert !== !!o.tlsKey) throw new ChorusError('--tls-cert and --tls-key go together');
      const running = await startCoordinator({
        listen: o.listen,
        nats: {
          url: o.nats,
          prefix: o.prefix,
          creds: o.natsCreds,
          token: o.natsToken ?? process.env.NATS_TOKEN,
          user: o.natsUser,
          pass: o.natsUser ? process.env.NATS_PASSWORD : undefined,
          layout: {
            replicas: parseReplicas(o.natsReplicas),
            eventsMaxAgeMs: o.eventsMaxAge ? parseDuration(o.eventsMaxAge, '--events-max-age') : 0,
            eventsMaxBytes: o.eventsMaxBytes ? parseBytes(o.eventsMaxBytes, '--events-max-bytes') : 0,
          },
        },
        artifactsTtlMs: o.artifactsTtl ? parseDuration(o.artifactsTtl, '--artifacts-ttl') : 0,
        auth: o.insecureNoAuth
          ? null
          : { clientToken: o.clientToken, workerToken: o.workerToken, tokenFile: o.tokenFile },
        tls: o.tlsCert ? { cert: o.tlsCert, key: o.tlsKey, ca: o.tlsCa } : null,
        heartbeatTimeoutMs: parseDuration(o.heartbeatTimeout, '--heartbeat-timeout'),
        retries: {
          maxFailures: parsePositiveInt(o.maxFailures, '--max-failures'),
          noProgressMs: parseDuration(o.stallTimeout, '--stall-timeout'),
        },
      });
      console.error(
        `chorus coordinator listening on ${running.address} (${o.tlsCert ? (o.tlsCa ? 'mTLS' : 'TLS') : 'plaintext'})`,
      );
      console.error(
        running.tokens
          ? `auth: bearer tokens from ${running.tokenSource} (clients set CHORUS_TOKEN to the client token)`
          : 'auth: OFF (--insecure-no-auth)',
      );
      let http: Awaited<ReturnType<typeof startHttpServer>> | null = null;
      let events: ReturnType<typeof jetStreamEvents> | null = null;
      if (o.http) {
        const at = String(o.http).lastIndexOf(':');
        const port = Number(String(o.http).slice(at + 1));
        if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65535)
          throw new ChorusError(`--http must be host:port, got '${o.http}'`);
        events = jetStreamEvents(running.coordinator.store.nc, o.prefix);
        const httpToken: string | undefined = o.httpToken ?? process.env.CHORUS_HTTP_TOKEN;
        const auth = running.tokens ? { tokens: [running.tokens.client, ...(httpToken ? [httpToken] : [])] } : null;
        http = await startHttpServer({
          host: String(o.http).slice(0, at) || '127.0.0.1',
          port,
          events,
          auth,
          tls: o.tlsCert ? { cert: o.tlsCert, key: o.tlsKey, ca: o.tlsCa } : null,
        });
        const opens = auth ? `open ${http.url}/?token=<${httpToken ? 'dashboard' : 'client'} token> once` : 'no auth';
        console.error(
          `dashboard on ${http.url} (${opens}; Prometheus metrics: ${http.url}/metrics with a bearer token)`,
        );
      }
      // Tests and scripts wait for this line to learn the port.
      console.log(`ready ${running.address}`);
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        process.once('SIGTERM', done);
        process.once('SIGINT', done);
      });
      console.error('coordinator: shutting down');
      events?.stop();
      await http?.close();
      await running.stop();
    });
}

function parseReplicas(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 5)
    throw new ChorusError(`--nats-replicas must be an integer from 1 to 5, got '${text}'`);
  return n;
}
