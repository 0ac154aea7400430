// Dashboard + metrics server with real HTTP requests, fed by synthetic events and by a real
// JetStream stream on the local NATS server (NATS_URL, default 127.0.0.1:4222).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { makeEvent, type ChorusEvent } from '../../shared/nats/events.ts';
import { natsNames } from '../../shared/nats/subjects.ts';
import { jetStreamEvents, startHttpServer } from '../../coordinator/http/index.ts';

const JOB = 'j1';
const ref = (replica: number) => ({ shardId: `s${replica}`, task: 'rev', replica });
const metric = (replica: number, step: number, loss: number): ChorusEvent =>
  makeEvent('metrics', JOB, {
    ...ref(replica),
    step,
    totalSteps: 20,
    loss,
    lr: 1e-3,
    p: 0.1 + 0.05 * step,
    tokens: 64 * step,
    tokensPerSec: 500 + replica,
    activeLayers: [0, 1],
  });

function events(): ChorusEvent[] {
  return [
    makeEvent('worker.state', null, {
      workerId: 'w1',
      name: 'node-a',
      state: 'online',
      devices: ['cpu:0', 'cpu:1'],
      reason: '',
    }),
    makeEvent('worker.state', null, {
      workerId: 'w2',
      name: 'node-b',
      state: 'online',
      devices: ['cpu:0'],
      reason: '',
    }),
    makeEvent('job.submitted', JOB, { name: 'demo', tasks: [{ name: 'rev', replicas: 2, steps: 20 }], shards: 2 }),
    makeEvent('job.state', JOB, { state: 'running', previous: 'queued', reason: '' }),
    makeEvent('shard.assigned', JOB, {
      ...ref(0),
      workerId: 'w1',
      workerName: 'node-a',
      device: 'cpu:0',
      attempt: 1,
      resumeStep: 0,
    }),
    makeEvent('shard.assigned', JOB, {
      ...ref(1),
      workerId: 'w2',
      workerName: 'node-b',
      device: 'cpu:0',
      attempt: 1,
      resumeStep: 0,
    }),
    metric(0, 1, 2.5),
    metric(1, 1, 2.6),
    metric(0, 2, 2.0),
    metric(1, 2, 2.1),
    metric(0, 3, 1.5),
    // a replayed step must not count twice
    metric(0, 3, 1.5),
    makeEvent('coto.layers', JOB, {
      task: 'rev',
      activationCounts: [3, 5],
      meanLossActive: [1.2, 1.1],
      meanLossInactive: [1.4, null],
      shapley: [0.2, 0.1],
    }),
    makeEvent('worker.state', null, {
      workerId: 'w2',
      name: 'node-b',
      state: 'dead',
      devices: ['cpu:0'],
      reason: 'no heartbeat for 5 s',
    }),
  ];
}

function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(name + (labels ? `{${labels}}` : ' ')));
  assert.ok(line, `metric ${name}{${labels}} missing in:\n${text}`);
  return Number(line!.split(' ').pop());
}

test('metrics, JSON API, page and SSE from ingested events', async () => {
  const http = await startHttpServer({ port: 0, pushIntervalMs: 50 });
  try {
    for (const ev of events()) http.ingest(ev);
    const metrics = await (await fetch(`${http.url}/metrics`)).text();
    assert.equal(metricValue(metrics, 'chorus_jobs', 'state="running"'), 1);
    assert.equal(metricValue(metrics, 'chorus_jobs', 'state="succeeded"'), 0);
    assert.equal(metricValue(metrics, 'chorus_workers_alive'), 1);
    assert.equal(metricValue(metrics, 'chorus_steps_total'), 5, 'steps 1..3 of r0 and 1..2 of r1');
    assert.equal(metricValue(metrics, 'chorus_tokens_total'), 64 * 5);
    assert.equal(metricValue(metrics, 'chorus_shard_loss', 'job="j1",task="rev",replica="0"'), 1.5);
    assert.equal(metricValue(metrics, 'chorus_shard_tokens_per_second', 'job="j1",task="rev",replica="1"'), 501);
    assert.ok(Math.abs(metricValue(metrics, 'chorus_shard_coto_p', 'job="j1",task="rev",replica="0"') - 0.25) < 1e-12);
    assert.equal(metricValue(metrics, 'chorus_events_total', 'type="metrics"'), 6);

    const list = await (await fetch(`${http.url}/api/jobs`)).json();
    assert.equal(list.length, 1);
    assert.equal(list[0].state, 'running');
    assert.ok(Math.abs(list[0].progress - 5 / 40) < 1e-12);
    const job = await (await fetch(`${http.url}/api/jobs/${JOB}`)).json();
    assert.deepEqual(
      job.shards.map((s: { step: number }) => s.step),
      [3, 2],
    );
    assert.deepEqual(
      job.shards[0].curve.map((p: number[]) => p[1]),
      [2.5, 2.0, 1.5],
    );
    assert.deepEqual(job.layers.rev.shapley, [0.2, 0.1]);
    assert.equal((await fetch(`${http.url}/api/jobs/nope`)).status, 404);
    const page = await (await fetch(`${http.url}/`)).text();
    assert.match(page, /<title>Chorus<\/title>/);
    assert.match(page, /new EventSource\('\/api\/events'\)/);

    // SSE: the snapshot first, then a pushed change.
    const ctrl = new AbortController();
    const res = await fetch(`${http.url}/api/events`, { signal: ctrl.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (pattern: RegExp) => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil(/event: workers\n/);
    assert.match(text, /event: jobs\ndata: \[\{"jobId":"j1"/);
    http.ingest(makeEvent('job.state', JOB, { state: 'succeeded', previous: 'merging', reason: '' }));
    await readUntil(/"state":"succeeded"/);
    assert.match(text, /event: job\ndata: \{"jobId":"j1","name":"demo","state":"succeeded"/);
    ctrl.abort();
  } finally {
    await http.close();
  }
});

test('fed from a real JetStream stream, including events published before it started', async (t) => {
  const url = process.env.NATS_URL ?? '127.0.0.1:4222';
  let nc;
  try {
    nc = await connect({ servers: url, timeout: 2000 });
  } catch {
    // The CI script starts nats-server; a developer machine without one cannot run this part.
    assert.fail(`no NATS server at ${url}: start one (nats-server -js) or set NATS_URL`);
  }
  const prefix = `dash${process.pid}`;
  const names = natsNames(prefix);
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: names.eventsStream, subjects: [names.eventsFilter] });
  const js = nc.jetstream();
  const evs = events();
  const publish = (ev: ChorusEvent) =>
    js.publish(
      ev.jobId
        ? names.jobEvent(ev.jobId, ev.type)
        : names.workerEvent((ev.data as { workerId: string }).workerId, ev.type),
      JSON.stringify(ev),
    );
  for (const ev of evs.slice(0, 6)) await publish(ev);
  const source = jetStreamEvents(nc, prefix);
  const http = await startHttpServer({ port: 0, events: source });
  t.after(async () => {
    source.stop();
    await http.close();
    await jsm.streams.delete(names.eventsStream);
    await nc!.close();
  });
  for (const ev of evs.slice(6)) await publish(ev);
  const deadline = Date.now() + 5000;
  let job;
  while (Date.now() < deadline) {
    const r = await fetch(`${http.url}/api/jobs/${JOB}`);
    if (r.status === 200) {
      job = await r.json();
      if (job.layers.rev) break;
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.ok(job?.layers.rev, 'all events arrived');
  assert.equal(job.state, 'running');
  assert.deepEqual(
    job.shards.map((s: { worker: string }) => s.worker),
    ['node-a', 'node-b'],
  );
  const metrics = await (await fetch(`${http.url}/metrics`)).text();
  assert.equal(metricValue(metrics, 'chorus_steps_total'), 5);
  assert.equal(metricValue(metrics, 'chorus_workers_alive'), 1);
});

test("the dashboard page's script compiles and draws log-scale loss charts", async () => {
  const { DASHBOARD_HTML } = await import('../../coordinator/http/page.ts');
  const js = /<script>([\s\S]*)<\/script>/.exec(DASHBOARD_HTML)![1].replace(/\nconnect\(\);\n$/, '\n');
  const page = new Function(`${js}; return { lineChart, barChart };`)() as {
    lineChart(series: Array<{ label: string; points: number[][] }>, opts: Record<string, unknown>): string;
    barChart(values: number[], label: string): string;
  };
  const labels = (svg: string) => [...svg.matchAll(/text-anchor="end">([^<]*)/g)].map((m) => m[1]);
  const loss = page.lineChart(
    [
      {
        label: 'r0',
        points: [
          [1, 10],
          [2, 1],
          [3, 0.01],
        ],
      },
    ],
    { log: true },
  );
  assert.deepEqual(labels(loss), ['0.01', '0.056', '0.32', '1.8', '10', 'step 3']);
  const p = page.lineChart(
    [
      {
        label: 'p(t)',
        points: [
          [1, 0.1],
          [2, 0.5],
        ],
      },
    ],
    { ymin: 0, ymax: 1 },
  );
  assert.deepEqual(labels(p), ['0.00', '0.25', '0.50', '0.75', '1.00', 'step 2']);
  assert.match(page.barChart([3, 5], 'activation count per layer'), /<title>layer 1: 5\.000<\/title>/);
});
