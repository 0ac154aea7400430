// Everything the coordinator keeps lives in NATS JetStream: jobs and workers in KV buckets, events in
// a stream, bulk bytes (adapters, checkpoints, uploads, reports) in an object store. A restarted
// coordinator rebuilds its state from here.
import { sha256Hex } from '../shared/digest.ts';
import {
  connect,
  AckPolicy,
  DeliverPolicy,
  type ConnectionOptions,
  type JetStreamClient,
  type KV,
  type NatsConnection,
  type ObjectStore,
  credsAuthenticator,
} from 'nats';
import { readFileSync } from 'node:fs';
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { natsNames, type NatsNames } from '../shared/nats/subjects.ts';
import { parseEvent, type ChorusEvent } from '../shared/nats/events.ts';

export interface NatsOptions {
  url?: string;
  prefix?: string;
  /** Path of a NATS .creds file (JWT + nkey). */
  creds?: string;
  token?: string;
  user?: string;
  pass?: string;
}

/** A NATS URL (or comma-separated list) fit for messages and logs: user:password@ becomes ***@. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@,]*@/g, '//***@');
}

export class NatsStore {
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly names: NatsNames,
    readonly jobs: KV,
    readonly workers: KV,
    readonly objects: ObjectStore,
  ) {}

  static async open(opts: NatsOptions = {}): Promise<NatsStore> {
    const names = natsNames(opts.prefix);
    const url = opts.url ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const co: ConnectionOptions = { servers: url, name: 'chorus-coordinator', maxReconnectAttempts: -1 };
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
      try {
        await jsm.streams.info(names.eventsStream);
      } catch {
        // A 2-minute window lets a restarted coordinator re-publish without duplicating events.
        await jsm.streams.add({ name: names.eventsStream, subjects: [names.eventsFilter], duplicate_window: 120e9 });
      }
      const js = nc.jetstream();
      const jobs = await js.views.kv(names.jobsBucket, { history: 1 });
      const workers = await js.views.kv(names.workersBucket, { history: 1 });
      const objects = await js.views.os(names.objectStore);
      return new NatsStore(nc, js, names, jobs, workers, objects);
    } catch (err) {
      await nc.close();
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

  /** Publishes an event; `msgId` makes a re-publish (after a restart, a repeated merge) a no-op. */
  async publish(event: ChorusEvent, subject: string, msgId?: string): Promise<number> {
    const ack = await this.js.publish(subject, JSON.stringify(event), msgId ? { msgID: msgId } : undefined);
    return ack.seq;
  }

  /** Replays every event matching `filter` from the first, then follows live until `stop` says so. */
  async *events(filter: string, signal?: AbortSignal): AsyncGenerator<ChorusEvent> {
    // An ephemeral pull consumer (not the client's "ordered consumer": that one never delivers on
    // nats-server 2.9, which Debian ships). No acks: it is a read-only replay + follow.
    const jsm = await this.nc.jetstreamManager();
    const info = await jsm.consumers.add(this.names.eventsStream, {
      filter_subject: filter,
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.None,
      inactive_threshold: 30e9,
    });
    const consumer = await this.js.consumers.get(this.names.eventsStream, info.name);
    const messages = await consumer.consume();
    const onAbort = () => void messages.close();
    signal?.addEventListener('abort', onAbort);
    try {
      for await (const m of messages) {
        yield parseEvent(m.data, m.seq);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      void messages.close().catch(() => undefined);
      await jsm.consumers.delete(this.names.eventsStream, info.name).catch(() => undefined);
    }
  }

  async getJson<T>(kv: KV, key: string): Promise<T | null> {
    const e = await kv.get(key);
    if (!e || e.operation !== 'PUT' || e.length === 0) return null;
    return e.json<T>();
  }

  async putJson(kv: KV, key: string, value: unknown): Promise<void> {
    await kv.put(key, JSON.stringify(value));
  }

  async allJson<T>(kv: KV): Promise<T[]> {
    const out: T[] = [];
    // Keys first, values after: reading values while the key lister runs loses keys.
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    for (const k of keys) {
      const v = await this.getJson<T>(kv, k);
      if (v) out.push(v);
    }
    return out;
  }

  async putObject(name: string, data: Uint8Array): Promise<{ name: string; size: number; sha256: string }> {
    await this.objects.putBlob({ name }, data);
    return { name, size: data.length, sha256: sha256Hex(data) };
  }

  async getObject(name: string): Promise<Uint8Array | null> {
    return this.objects.getBlob(name);
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
    const info = await this.objects.info(name);
    return !!info && !info.deleted;
  }
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
