// Starting and stopping a coordinator: NATS store, state reload, gRPC server. Used by
// `chorus coordinator`, the tests and the demo.
import { join } from 'node:path';
import { homedir } from 'node:os';
import type * as grpc from '@grpc/grpc-js';
import { ChorusError } from '../shared/errors.ts';
import { Authenticator, loadTokens, type Tokens } from './rpc/auth.ts';
import { Coordinator } from './coordinator.ts';
import { DEFAULT_RETRIES, type RetryOptions } from './retries.ts';
import { NatsStore, type NatsOptions } from './nats-store.ts';
import { ArtifactExpiry } from './retention.ts';
import { closeMergePool } from './merge/pool.ts';
import { bind, createServer, serverCredentials, type TlsOptions } from './rpc/server.ts';

export interface StartOptions {
  listen: string;
  nats: NatsOptions;
  /** null = --insecure-no-auth. */
  auth: { clientToken?: string; workerToken?: string; tokenFile?: string } | null;
  tls: TlsOptions | null;
  heartbeatTimeoutMs: number;
  /** Overrides of the retry policy (coordinator/retries.ts). */
  retries?: Partial<RetryOptions>;
  /** Delete a finished job's objects this long after it ended (0: keep them). */
  artifactsTtlMs?: number;
  log?: (line: string) => void;
}

export interface RunningCoordinator {
  port: number;
  address: string;
  coordinator: Coordinator;
  tokens: Tokens | null;
  tokenSource: string;
  stop(): Promise<void>;
}

export const DEFAULT_TOKEN_FILE = join(homedir(), '.chorus', 'tokens.json');

export async function startCoordinator(opts: StartOptions): Promise<RunningCoordinator> {
  const log = opts.log ?? ((l: string) => console.error(l));
  let tokens: Tokens | null = null;
  let tokenSource = 'none (--insecure-no-auth)';
  if (opts.auth) {
    const loaded = loadTokens({ ...opts.auth, tokenFile: opts.auth.tokenFile ?? DEFAULT_TOKEN_FILE });
    tokens = loaded.tokens;
    tokenSource = loaded.source;
  }
  const store = await NatsStore.open({ log, ...opts.nats });
  const coordinator = new Coordinator(store, {
    heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
    heartbeatIntervalMs: Math.max(200, Math.floor(opts.heartbeatTimeoutMs / 4)),
    retries: { ...DEFAULT_RETRIES, ...opts.retries },
    log,
  });
  await coordinator.start();
  const expiry = new ArtifactExpiry(coordinator.state, opts.artifactsTtlMs ?? 0);
  expiry.start();
  const server: grpc.Server = createServer(coordinator, new Authenticator(tokens));
  let port: number;
  try {
    port = await bind(server, opts.listen, serverCredentials(opts.tls));
  } catch (err) {
    await expiry.stop();
    await coordinator.stop();
    await store.close();
    throw err;
  }
  const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
  let stopping: Promise<void> | null = null;
  return {
    port,
    address: `${host}:${port}`,
    coordinator,
    tokens,
    tokenSource,
    stop() {
      stopping ??= (async () => {
        await expiry.stop();
        await coordinator.stop();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
        await store.close();
        await closeMergePool();
      })();
      return stopping;
    },
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "5s", "500ms", "2m", "12h", "30d" or plain milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new ChorusError(`${flag}: "${text}" is not a duration (e.g. 5s, 500ms, 2m, 12h, 30d)`);
  return Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms'];
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/** "500MB", "2GiB", "1g" or plain bytes. */
export function parseBytes(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(text.trim());
  if (!m) throw new ChorusError(`${flag}: "${text}" is not a size (e.g. 500MB, 2GiB)`);
  return Math.round(Number(m[1]) * BYTE_UNITS[(m[2] ?? '').toLowerCase()]);
}
