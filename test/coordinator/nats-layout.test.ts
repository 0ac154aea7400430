// The coordinator's JetStream layout on the real NATS server: streams that exist with other
// settings are refused (not silently reused), replicas beyond a single server are explained,
// event retention comes from the flags, and --artifacts-ttl deletes only finished jobs' objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NatsStore } from '../../coordinator/nats-store.ts';
import { parseBytes, parseDuration } from '../../coordinator/main.ts';
import { ClusterState } from '../../coordinator/state.ts';
import { ArtifactExpiry } from '../../coordinator/retention.ts';
import { DEFAULT_RETRIES } from '../../coordinator/retries.ts';
import { Jobs } from '../../coordinator/jobs.ts';
import { Evaluations } from '../../coordinator/evals.ts';
import { cleanNats, NATS_URL, uniquePrefix } from '../cluster/helpers.ts';

test('a stream that exists with other settings is refused, naming the stream, the field and the fix', async () => {
  const prefix = uniquePrefix();
  try {
    const first = await NatsStore.open({ url: NATS_URL, prefix, layout: { eventsMaxAgeMs: 3_600_000 } });
    const info = await (await first.nc.jetstreamManager()).streams.info(first.names.eventsStream);
    assert.equal(info.config.max_age, 3_600_000 * 1e6, 'events kept for --events-max-age');
    assert.equal(info.config.num_replicas, 1);
    await first.close();
    // Same settings: reused.
    await (await NatsStore.open({ url: NATS_URL, prefix, layout: { eventsMaxAgeMs: 3_600_000 } })).close();
    await assert.rejects(
      NatsStore.open({ url: NATS_URL, prefix }),
      new RegExp(
        `NATS stream ${prefix.toUpperCase()}_EVENTS exists with max_age 3600000000000, but this coordinator asks for 0 \\(--events-max-age\\).*nats stream edit`,
      ),
    );
    await assert.rejects(
      NatsStore.open({ url: NATS_URL, prefix, layout: { eventsMaxAgeMs: 3_600_000, eventsMaxBytes: 1e6 } }),
      /exists with max_bytes -1, but this coordinator asks for 1000000 \(--events-max-bytes\)/,
    );
  } finally {
    await cleanNats(prefix);
  }
});

test('--nats-replicas 3 on a single server says it needs a cluster', async () => {
  const prefix = uniquePrefix();
  try {
    await assert.rejects(
      NatsStore.open({ url: NATS_URL, prefix, layout: { replicas: 3 } }),
      /with 3 replicas .*needs a JetStream cluster of at least 3 servers/,
    );
  } finally {
    await cleanNats(prefix);
  }
});

test('--events-max-bytes caps the events stream', async () => {
  const prefix = uniquePrefix();
  try {
    const store = await NatsStore.open({ url: NATS_URL, prefix, layout: { eventsMaxBytes: 4096 } });
    const info = await (await store.nc.jetstreamManager()).streams.info(store.names.eventsStream);
    assert.equal(info.config.max_bytes, 4096);
    await store.close();
  } finally {
    await cleanNats(prefix);
  }
});

test('--artifacts-ttl deletes the objects of jobs that ended longer ago, and only those, and keeps the mark in KV', async () => {
  const prefix = uniquePrefix();
  const opts = { heartbeatTimeoutMs: 1000, heartbeatIntervalMs: 250, retries: DEFAULT_RETRIES, log: () => {} };
  const store = await NatsStore.open({ url: NATS_URL, prefix });
  let reopened: NatsStore | undefined;
  try {
    const state = new ClusterState(store, opts);
    const jobs = new Jobs(state, new Evaluations(state));
    const spec = JSON.stringify({ base_model: '/m', data: { train: '/d.jsonl' }, training: { steps: 1 } });
    // Submitted (stored in KV) like any job; "live" first, so it is the one that changed longest ago.
    const live = await jobs.submit(spec, 'live');
    const old = await jobs.submit(spec, 'old');
    const young = await jobs.submit(spec, 'young');
    await state.setState(old, 'succeeded', 'done');
    await new Promise((r) => setTimeout(r, 20));
    await jobs.cancel(young.id, 'stopped');
    await state.flush();
    for (const id of [live.id, old.id, young.id]) {
      await store.putObject(`jobs/${id}/result/report.json`, new Uint8Array([1, 2, 3]));
      await store.putObject(`jobs/${id}/checkpoints/s.safetensors`, new Uint8Array([4]));
    }
    await store.putObject('uploads/abc/data.jsonl', new Uint8Array([5]));
    // The sweep's clock: "old" ended more than the TTL ago, "young" (cancelled 20 ms later) did not.
    const ttl = 5_000;
    const now = young.updatedMs + ttl - 1;
    assert.ok(old.updatedMs + ttl <= now && live.updatedMs + ttl <= now, 'old and live are past the TTL');
    await new ArtifactExpiry(state, ttl).sweep(now);
    await state.flush();
    const left = (await store.objects.list())
      .filter((o) => !o.deleted)
      .map((o) => o.name)
      .sort();
    assert.deepEqual(
      left,
      [
        `jobs/${live.id}/checkpoints/s.safetensors`,
        `jobs/${live.id}/result/report.json`,
        `jobs/${young.id}/checkpoints/s.safetensors`,
        `jobs/${young.id}/result/report.json`,
        'uploads/abc/data.jsonl',
      ].sort(),
    );
    // The mark is in the job's KV record, read back from the state bucket …
    const stored = (id: string) => store.getJson<{ state: string; artifactsExpiredMs?: number }>(store.jobs, id);
    const oldStored = await stored(old.id);
    assert.equal(oldStored?.state, 'succeeded');
    assert.equal(oldStored?.artifactsExpiredMs, now);
    assert.equal((await stored(young.id))?.artifactsExpiredMs, undefined);
    assert.equal((await stored(live.id))?.artifactsExpiredMs, undefined);
    // … and a restarted coordinator loads it, so its sweep leaves "old" alone.
    reopened = await NatsStore.open({ url: NATS_URL, prefix });
    const restarted = new ClusterState(reopened, opts);
    await restarted.load();
    assert.equal(restarted.jobs.get(old.id)?.artifactsExpiredMs, now);
    assert.equal(restarted.jobs.get(young.id)?.artifactsExpiredMs, undefined);
    assert.equal(restarted.jobs.get(live.id)?.state, 'queued');
  } finally {
    await reopened?.close();
    await store.close();
    await cleanNats(prefix);
  }
});

test('durations and sizes of the retention flags', () => {
  assert.equal(parseDuration('30d', '--x'), 30 * 86_400_000);
  assert.equal(parseDuration('12h', '--x'), 12 * 3_600_000);
  assert.equal(parseDuration('250', '--x'), 250);
  assert.throws(() => parseDuration('7 days', '--artifacts-ttl'), /--artifacts-ttl: "7 days" is not a duration/);
  assert.equal(parseBytes('1GB', '--x'), 1e9);
  assert.equal(parseBytes('2GiB', '--x'), 2 * 2 ** 30);
  assert.equal(parseBytes('512', '--x'), 512);
  assert.throws(() => parseBytes('lots', '--events-max-bytes'), /--events-max-bytes: "lots" is not a size/);
});
