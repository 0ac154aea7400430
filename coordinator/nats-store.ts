// Everything the coordinator keeps lives in NATS JetStream: jobs and workers in KV buckets, events in
// a stream, bulk bytes (adapters, checkpoints, uploads, reports) in an object store. A restarted
// coordinator rebuilds its state from here.
import { sha256Hex } from '../shared/digest.ts';
import {
  connect,
  nuid,
  type MsgRequest,
  type StoredMsg,
  type ConnectionOptions,
  type JetStreamClient,
  type KV,
  type NatsConnection,
  type ObjectStore,
  credsAuthenticator,
} from 'nats';
import { readFileSync } from 'node:fs';
import { ChorusError, errorMessage, Unavailable } from '../shared/errors.ts';
import { natsNames, type NatsNames } from '../shared/nats/subjects.ts';
import { parseEvent, type ChorusEvent } from '../shared/nats/events.ts';
import { DEFAULT_LAYOUT, ensureNatsResources, type NatsLayout } from './nats-setup.ts';
import { isTransientNatsError, withNatsRetry } from './nats-retry.ts';

export interface NatsOptions {
  url?: string;
  prefix?: string;
  /** Path of a NATS .creds file (JWT + nkey). */
  creds?: string;
  token?: string;
  user?: string;
  pass?: string;
  /** Replicas and event retention of the streams, buckets and object store (defaults: 1, keep all). */
  layout?: Partial<NatsLayout>;
  /** Where connection changes (reconnects to another node) and retries are reported. */
  log?: (line: string) => void;
}

/** A NATS URL (or comma-separated list) fit for messages and logs: user:password@ becomes ***@. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@,]*@/g, '//***@');
}

export class NatsStore {
  private readonly log: (line: string) => void;

  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly names: NatsNames,
    readonly jobs: KV,
    readonly workers: KV,
    readonly objects: ObjectStore,
    log: (line: string) => void,
  ) {
    this.log = log;
    handleChunkPublishes(objects);
    void this.reportConnection();
  }

  /** The NATS server this connection is on now (its server_name), for logs and the failover test. */
  get server(): string {
    return this.nc.info?.server_name ?? 'unknown';
  }

  private async reportConnection(): Promise<void> {
    let at = this.server;
    this.log(`NATS: connected to ${at}`);
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') this.log(`NATS: disconnected from ${at}`);
      else if (s.type === 'reconnect') this.log(`NATS: reconnected to ${(at = this.server)}`);
    }
  }

  /** A JetStream call retried through node losses and leader elections (see nats-retry.ts). */
  retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return withNatsRetry(what, fn, { closed: () => this.nc.isClosed(), log: this.log });
  }

  static async open(opts: NatsOptions = {}): Promise<NatsStore> {
    const names = natsNames(opts.prefix);
    const url = opts.url ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const log = opts.log ?? (() => undefined);
    const co: ConnectionOptions = {
      servers: url.split(',').map((u) => u.trim()),
      name: 'chorus-coordinator',
      maxReconnectAttempts: -1,
      // A dead node is noticed by its closed socket at once; a silent one (network cut) within ~10 s.
      pingInterval: 5_000,
      maxPingOut: 2,
      reconnectTimeWait: 250,
    };
    if (opts.creds) co.authenticator = credsAuthenticator(readFileSync(opts.creds));
    if (opts.token) co.token = opts.token;
    if (opts.user) co.user = opts.user;
    if (opts.pass) co.pass = opts.pass;
    let nc: NatsConnection;
    try {
      nc = await connect(co);
    } catch (err) {
      throw new ChorusError(
        `cannot connect to NATS at ${redactUrl(url)}: ${errorMessage(err)} (start nats-server with -js, or set --nats / NATS_URL)`,
      );
    }
    try {
      const jsm = await nc.jetstreamManager();
      const js = nc.jetstream();
      const layout = { ...DEFAULT_LAYOUT, ...opts.layout };
      const { jobs, workers, objects } = await ensureNatsResources(js, jsm, names, layout);
      return new NatsStore(nc, js, names, jobs, workers, objects, log);
    } catch (err) {
      await nc.close();
      if (err instanceof ChorusError) throw err;
      throw new ChorusError(
        `NATS at ${redactUrl(url)} has no usable JetStream (${errorMessage(err)}); start nats-server with -js`,
      );
    }
  }

  /** The largest message (KV value) the server takes: its max_payload (NATS' default is 1 MiB). */
  get maxRecordBytes(): number {
    return this.nc.info?.max_payload ?? 1 << 20;
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => this.nc.close());
  }

  /**
   * Publishes an event; `msgId` makes a re-publish (after a restart, a repeated merge) a no-op.
   * Every event carries a msg id (a fresh one when none is given), so a publish retried after a lost
   * ack (the node died after storing it) is dropped by the stream instead of stored twice.
   */
  async publish(event: ChorusEvent, subject: string, msgId?: string): Promise<number> {
    const payload = JSON.stringify(event);
    const id = msgId ?? nuid.next();
    const ack = await this.retry(`publishing ${event.type}`, () => this.js.publish(subject, payload, { msgID: id }));
    return ack.seq;
  }

  /**
   * Replays every event matching `filter` from the first, then follows live until `signal` aborts.
   * Reads the stream itself, one "next message on this subject from sequence N" request at a time
   * (STREAM.MSG.GET, answered by the stream's leader), so the only state is N. Consumers were lossy
   * here: a message the server pushed while the client was reconnecting to another node, or after
   * the client had given up on a fetch, counted as delivered (no acks on a read-only replay) and
   * was never seen. With N, a watcher sees every event once, in stream order, across node losses.
   */
  async *events(filter: string, signal?: AbortSignal): AsyncGenerator<ChorusEvent> {
    const jsm = await this.retry('opening JetStream', () => this.nc.jetstreamManager());
    // Core-NATS wake-ups when something new is published; the timer covers any missed one.
    let fresh = false;
    let wake: (() => void) | null = null;
    const sub = this.nc.subscribe(filter, {
      callback: () => {
        fresh = true;
        wake?.();
      },
    });
    const onAbort = () => wake?.();
    signal?.addEventListener('abort', onAbort);
    let next = 1;
    let failures = 0;
    try {
      while (!signal?.aborted && !this.nc.isClosed()) {
        fresh = false;
        let m: StoredMsg;
        try {
          m = await jsm.streams.getMessage(this.names.eventsStream, {
            seq: next,
            next_by_subj: filter,
          } as unknown as MsgRequest);
          failures = 0;
        } catch (err) {
          if (isNoMessage(err)) {
            if (!fresh) await new Promise<void>((r) => ((wake = r), setTimeout(r, 1000)));
            wake = null;
            continue;
          }
          if (this.nc.isClosed() || !isTransientNatsError(err)) throw err;
          if (failures++ % 20 === 0)
            this.log(`NATS: reading events of ${filter} at seq ${next}: ${errorMessage(err)}; retrying`);
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        next = m.seq + 1;
        yield parseEvent(m.data, m.seq);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      sub.unsubscribe();
    }
  }

  async getJson<T>(kv: KV, key: string): Promise<T | null> {
    const e = await this.retry(`reading ${key}`, () => kv.get(key));
    if (!e || e.operation !== 'PUT' || e.length === 0) return null;
    return e.json<T>();
  }

  async putJson(kv: KV, key: string, value: unknown): Promise<void> {
    await this.putText(kv, key, JSON.stringify(value));
  }

  async putText(kv: KV, key: string, text: string): Promise<void> {
    await this.retry(`saving ${key}`, () => kv.put(key, text));
  }

  async allJson<T>(kv: KV): Promise<T[]> {
    const out: T[] = [];
    // Keys first, values after: reading values while the key lister runs loses keys.
    const keys: string[] = [];
    await this.retry('listing keys', async () => {
      keys.length = 0;
      for await (const k of await kv.keys()) keys.push(k);
    });
    for (const k of keys) {
      const v = await this.getJson<T>(kv, k);
      if (v) out.push(v);
    }
    return out;
  }

  /**
   * Stores an object; a put cut off by a node loss is made again from the start (same name: the
   * object store keeps the last complete one). The stored digest is checked against the bytes given.
   */
  async putObject(name: string, data: Uint8Array): Promise<{ name: string; size: number; sha256: string }> {
    const sha256 = sha256Hex(data);
    const want = `SHA-256=${Buffer.from(sha256, 'hex').toString('base64url')}`;
    await this.retry(`storing ${name}`, async () => {
      const info = await this.objects.putBlob({ name }, data);
      if (info.digest.replace(/=+$/, '') !== want.replace(/=+$/, '') || info.size !== data.length)
        throw new Error(`object ${name} stored as ${info.size} bytes with ${info.digest}, expected ${want}`);
    });
    return { name, size: data.length, sha256 };
  }

  /**
   * Stores an object as its bytes arrive (an upload in progress): chunks go to JetStream as they
   * come, so nothing holds the whole object. Not retried (the stream cannot be read twice): a
   * failed put removes its partial chunks and the uploader sends again. Returns the store's digest.
   */
  async putObjectStream(
    name: string,
    rs: ReadableStream<Uint8Array>,
  ): Promise<{ name: string; size: number; sha256: string }> {
    let info;
    try {
      info = await this.objects.put({ name }, rs);
    } catch (err) {
      if (!isTransientNatsError(err)) throw err;
      // The bytes went by; only the uploader has them again (ChorusClient and the worker's
      // transfers send the whole object again on UNAVAILABLE).
      this.log(`NATS: storing ${name} failed (${errorMessage(err)}); retrying: the uploader is asked to send it again`);
      throw new Unavailable(`storing ${name} failed (${errorMessage(err)}): send it again`, { cause: err });
    }
    const sha256 = Buffer.from(info.digest.slice('SHA-256='.length), 'base64url').toString('hex');
    return { name, size: info.size, sha256 };
  }

  async getObject(name: string): Promise<Uint8Array | null> {
    return this.retry(`reading ${name}`, () => this.objects.getBlob(name));
  }

  /** An object a worker announced by name and SHA-256: exactly those bytes, or an error naming it. */
  async getAnnounced(name: string, sha256: string): Promise<Uint8Array> {
    const bytes = await this.getObject(name);
    if (!bytes) throw new Error(`object ${name} is missing from the object store`);
    const got = sha256Hex(bytes);
    if (sha256 && got !== sha256)
      throw new Error(`object ${name} has SHA-256 ${got} but the worker announced ${sha256}`);
    return bytes;
  }

  async hasObject(name: string): Promise<boolean> {
    const info = await this.retry(`looking up ${name}`, () => this.objects.info(name));
    return !!info && !info.deleted;
  }
}

/**
 * nats.js's streaming put publishes an object's chunks without awaiting them while it waits for the
 * next bytes of the stream, and awaits them all at the end. A chunk whose publish fails in between
 * (a NATS node stopped) is an unhandled rejection until then, which ends the process. Each publish
 * of this store's client is therefore marked handled at once; put still awaits it and fails with
 * its error (and removes the partial object).
 */
function handleChunkPublishes(objects: ObjectStore): void {
  const impl = objects as unknown as { js?: { publish: (...args: unknown[]) => Promise<unknown> } };
  const js = impl.js;
  if (!js || typeof js.publish !== 'function') return;
  const publish = js.publish.bind(js);
  impl.js = Object.assign(Object.create(js) as typeof js, {
    publish: (...args: unknown[]) => {
      const p = publish(...args);
      p.catch(() => undefined);
      return p;
    },
  });
}

/** Deletes everything a coordinator with this prefix created (events stream, KV buckets, object store). */
export async function deleteNatsPrefix(nc: NatsConnection, prefix: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const names = natsNames(prefix);
  for (const stream of [
    names.eventsStream,
    `KV_${names.jobsBucket}`,
    `KV_${names.workersBucket}`,
    `OBJ_${names.objectStore}`,
  ]) {
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}

function isNoMessage(err: unknown): boolean {
  return (
    (err as { api_error?: { err_code?: number } })?.api_error?.err_code === 10037 ||
    /no message found/i.test(errorMessage(err))
  );
}
