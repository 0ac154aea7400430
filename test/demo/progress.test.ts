// The progress reducer and renderers against a synthetic event stream of the cluster's event types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { makeEvent, parseEvent, type ChorusEvent } from '../../shared/nats/events.ts';
import { applyEvent, createProgress, emptyJob, MAX_POINTS } from '../../shared/progress/index.ts';

const JOB = 'job-1';

function at(ev: ChorusEvent, timeMs: number): ChorusEvent {
  // Round-trip through the wire parser so the fixtures are valid events, not just typed literals.
  return parseEvent(JSON.stringify({ ...ev, timeMs }));
}

function stream(): ChorusEvent[] {
  const evs: ChorusEvent[] = [];
  let t = 1000;
  evs.push(
    at(
      makeEvent('job.submitted', JOB, { name: 'demo', tasks: [{ name: 'shift', replicas: 2, steps: 10 }], shards: 2 }),
      t,
    ),
  );
  evs.push(at(makeEvent('job.state', JOB, { state: 'queued', previous: null, reason: 'waiting for 2 devices' }), t));
  evs.push(at(makeEvent('job.state', JOB, { state: 'running', previous: 'queued', reason: '' }), (t += 10)));
  for (const replica of [0, 1]) {
    const ref = { shardId: `s${replica}`, task: 'shift', replica };
    evs.push(
      at(
        makeEvent('shard.assigned', JOB, {
          ...ref,
          workerId: 'w1',
          workerName: 'node-a',
          device: `cpu:${replica}`,
          attempt: 1,
          resumeStep: 0,
        }),
        (t += 1),
      ),
    );
    evs.push(at(makeEvent('shard.started', JOB, { ...ref, workerId: 'w1', step: 0 }), (t += 1)));
  }
  for (let step = 1; step <= 10; step++) {
    for (const replica of [0, 1]) {
      const p = Math.min(1, 0.1 + (0.9 * step) / 8);
      evs.push(
        at(
          makeEvent('metrics', JOB, {
            shardId: `s${replica}`,
            task: 'shift',
            replica,
            step,
            totalSteps: 10,
            loss: 3 / step,
            lr: 1e-3,
            p,
            tokens: 100 * step,
            tokensPerSec: 250,
            activeLayers: [0],
          }),
          (t += 1000),
        ),
      );
    }
  }
  evs.push(
    at(
      makeEvent('round.merged', JOB, {
        task: 'shift',
        round: 1,
        step: 5,
        method: 'mean',
        object: 'o',
        sha256: 'x',
        bytes: 10,
      }),
      (t += 1),
    ),
  );
  evs.push(
    at(
      makeEvent('coto.layers', JOB, {
        task: 'shift',
        activationCounts: [7, 9],
        meanLossActive: [1, 2],
        meanLossInactive: [null, 3],
        shapley: null,
      }),
      (t += 1),
    ),
  );
  for (const replica of [0, 1]) {
    evs.push(
      at(
        makeEvent('shard.finished', JOB, {
          shardId: `s${replica}`,
          task: 'shift',
          replica,
          steps: 10,
          tokens: 1000,
          finalLoss: 0.3,
          object: 'o',
          sha256: 'x',
        }),
        (t += 1),
      ),
    );
  }
  evs.push(at(makeEvent('merge.done', JOB, { method: 'ties', object: 'm', sha256: 'y' }), (t += 1)));
  evs.push(at(makeEvent('job.state', JOB, { state: 'succeeded', previous: 'merging', reason: '' }), (t += 1)));
  return evs;
}

test('reducer follows shards, rounds, CoTo layers and the final state', () => {
  const job = emptyJob(JOB);
  for (const ev of stream()) applyEvent(job, ev);
  applyEvent(job, makeEvent('job.state', 'other-job', { state: 'failed', previous: null, reason: 'not ours' }));
  assert.equal(job.state, 'succeeded');
  assert.equal(job.name, 'demo');
  assert.equal(job.shards.size, 2);
  const s0 = job.shards.get('s0')!;
  assert.equal(s0.status, 'finished');
  assert.equal(s0.step, 10);
  assert.equal(s0.loss, 0.3);
  assert.equal(s0.worker, 'node-a');
  assert.equal(s0.curve.length, 10);
  assert.deepEqual(s0.curve[1], [2, 1.5, 0.1 + (0.9 * 2) / 8]);
  assert.equal(job.rounds.get('shift'), 1);
  assert.deepEqual(job.layers.get('shift')!.activationCounts, [7, 9]);
  assert.equal(job.merge!.method, 'ties');
});

test('curves stay bounded and drop steps that a resumed shard replays', () => {
  const job = emptyJob(JOB);
  const ref = { shardId: 's', task: 't', replica: 0 };
  const m = (step: number) =>
    makeEvent('metrics', JOB, {
      ...ref,
      step,
      totalSteps: 5000,
      loss: 1,
      lr: 0,
      p: 1,
      tokens: 0,
      tokensPerSec: 0,
      activeLayers: [],
    });
  for (let step = 1; step <= 2000; step++) applyEvent(job, m(step));
  const curve = job.shards.get('s')!.curve;
  assert.ok(curve.length <= MAX_POINTS, `curve has ${curve.length} points`);
  assert.equal(curve[curve.length - 1][0], 2000);
  applyEvent(job, m(1500));
  assert.equal(curve[curve.length - 1][0], 1500);
  assert.ok(
    curve.every((p, i) => i === 0 || p[0] > curve[i - 1][0]),
    'steps increase',
  );
});

test('plain mode (not a TTY) prints state lines at once and throttles progress lines', () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b) => (text += b));
  const r = createProgress(JOB, { out, tty: false, intervalMs: 3000 });
  for (const ev of stream()) r.handle(ev);
  r.close();
  const lines = text.trim().split('\n');
  assert.ok(lines.includes('job job-1 queued: waiting for 2 devices'));
  assert.ok(lines.includes('shift/r0 → node-a cpu:0'));
  assert.ok(lines.includes('shift round 1 merged at step 5 (mean)'));
  assert.ok(lines.includes('job job-1 succeeded'));
  const progress0 = lines.filter((l) => l.startsWith('shift/r0 step'));
  // Metrics arrive every 2 s of event time per shard: steps 1, 3 (4 s later), 5, 7, 9 and the last one.
  assert.deepEqual(
    progress0.map((l) => Number(/step (\d+)\//.exec(l)![1])),
    [1, 3, 5, 7, 9, 10],
  );
  assert.match(progress0[1], /^shift\/r0 step 3\/10 loss 1\.0000 p\(t\) 0\.44 250 tok\/s \[running on node-a\]$/);
  assert.ok(!text.includes('\x1b['), 'no terminal escapes in plain mode');
});

test('TTY mode draws one bar per shard with loss and p(t)', async () => {
  const out = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
  let text = '';
  out.on('data', (b) => (text += b));
  const r = createProgress(JOB, { out, tty: true });
  for (const ev of stream()) r.handle(ev);
  r.close();
  await new Promise((res) => setImmediate(res));
  assert.match(text, /shift\/r0/);
  assert.match(text, /shift\/r1/);
  assert.match(text, /10\/10 loss 0\.3000 p\(t\) 1\.00/);
  assert.match(text, /job job-1 succeeded/);
});
