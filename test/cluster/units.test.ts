// The coordinator's pure parts, checked against independent computations: gang scheduling, the
// gradient sum (float64 in replica order), Shapley values (exact enumeration vs the closed form of
// an additive game; permutation sampling on a game with interactions), token files, NATS names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { schedule } from '../../coordinator/scheduler.ts';
import { GradientAggregator } from '../../coordinator/sync.ts';
import { shapleyPlan, shapleyValues } from '../../coordinator/shapley.ts';
import { Authenticator, AuthError, loadTokens } from '../../coordinator/auth.ts';
import { natsNames } from '../../shared/nats/subjects.ts';
import { parseEvent, makeEvent } from '../../shared/nats/events.ts';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../../shared/formats/peft.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../../worker/checkpoint.ts';
import { parseDevices } from '../../worker/devices.ts';
import { tmp } from './helpers.ts';

test('gang admission: a job starts only when all its shards fit; running jobs refill first; spread over workers', () => {
  const free = [
    { workerId: 'w1', device: 'cpu:0' },
    { workerId: 'w1', device: 'cpu:1' },
    { workerId: 'w2', device: 'cpu:0' },
  ];
  const r = schedule(
    [
      { id: 'big', state: 'queued', pendingShards: ['b0', 'b1', 'b2', 'b3'] },
      { id: 'small', state: 'queued', pendingShards: ['s0', 's1'] },
    ],
    free,
  );
  assert.deepEqual(
    r.placements.map((p) => p.shardId),
    ['s0', 's1'],
  );
  assert.deepEqual(
    r.placements.map((p) => p.workerId),
    ['w1', 'w2'],
    'round-robin over workers',
  );
  assert.match(r.waiting.get('big')!, /needs 4, 3 free/);
  const r2 = schedule(
    [
      { id: 'q', state: 'queued', pendingShards: ['q0', 'q1', 'q2'] },
      { id: 'run', state: 'running', pendingShards: ['m0'] },
    ],
    free,
  );
  assert.deepEqual(
    r2.placements.map((p) => p.shardId),
    ['m0'],
    'the moved shard first; the 3-shard gang no longer fits',
  );
});

test('gradient sums: float64 sum in replica order, identical for every arrival order, kept for replay', () => {
  const R = 3;
  const n = 1000;
  const parts = Array.from({ length: R }, (_, r) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + r) * 10 ** ((i % 7) - 3)),
  );
  const expected = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let r = 0; r < R; r++) s += parts[r][i];
    expected[i] = s;
  }
  for (const order of [
    [0, 1, 2],
    [2, 0, 1],
    [1, 2, 0],
  ]) {
    const agg = new GradientAggregator(R);
    let out = null;
    for (const r of order)
      out = agg.add(7, { replica: r, sums: new Uint8Array(parts[r].buffer.slice(0)), tokens: 10 + r, lossSum: r });
    assert.ok(out?.fresh);
    assert.deepEqual(new Float32Array(out!.total.sums.buffer), expected);
    assert.equal(out!.total.tokens, 33);
    // A replica replaying step 7 gets the stored total.
    const again = agg.add(7, { replica: 1, sums: new Uint8Array(4 * n), tokens: 0, lossSum: 0 });
    assert.equal(again?.fresh, false);
    assert.deepEqual(new Float32Array(again!.total.sums.buffer), expected);
    agg.forgetThrough(7);
    assert.equal(agg.add(7, { replica: 0, sums: new Uint8Array(4 * n), tokens: 0, lossSum: 0 }), null);
  }
});

test("Shapley: exact on an additive game equals each layer's own effect; sampling is unbiased on a game with interactions", () => {
  const effect = [0.5, -0.2, 0.1, 0.3];
  const loss = (c: number[]) => 3 - c.reduce((s, l) => s + effect[l], 0);
  const exact = shapleyPlan(4, 0, 'k');
  assert.ok(exact.exact);
  assert.equal(exact.coalitions.length, 16);
  const phi = shapleyValues(exact, exact.coalitions.map(loss));
  phi.forEach((p, l) => assert.ok(Math.abs(p - effect[l]) < 1e-12));
  // Interaction game on 8 layers: v(S) = Σ e_l + 0.4·[0∈S ∧ 1∈S]; the pair shares the bonus equally.
  const e8 = [0.1, 0.2, 0.3, 0.0, -0.1, 0.05, 0.15, 0.25];
  const loss8 = (c: number[]) => -(c.reduce((s, l) => s + e8[l], 0) + (c.includes(0) && c.includes(1) ? 0.4 : 0));
  const plan = shapleyPlan(8, 400, 'seed');
  assert.equal(plan.exact, false);
  const est = shapleyValues(plan, plan.coalitions.map(loss8));
  const truth = e8.map((x, l) => x + (l < 2 ? 0.2 : 0));
  // Efficiency holds exactly for the permutation estimator.
  assert.ok(Math.abs(est.reduce((a, b) => a + b) - truth.reduce((a, b) => a + b)) < 1e-9);
  est.forEach((p, l) => assert.ok(Math.abs(p - truth[l]) < 0.05, `layer ${l}: ${p} vs ${truth[l]}`));
});

test('tokens: generated once into a 0600 file, reused, roles told apart', () => {
  const file = join(tmp(), 'sub', 'tokens.json');
  const a = loadTokens({ tokenFile: file });
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const b = loadTokens({ tokenFile: file });
  assert.deepEqual(a.tokens, b.tokens);
  assert.notEqual(a.tokens.client, a.tokens.worker);
  assert.ok(JSON.parse(readFileSync(file, 'utf8')).client === a.tokens.client);
  const auth = new Authenticator(a.tokens);
  const md = (t?: string) => {
    const m = new grpc.Metadata();
    if (t) m.set('authorization', `Bearer ${t}`);
    return m;
  };
  assert.equal(auth.authorize(md(a.tokens.client), ['client']), 'client');
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return (e as AuthError).code;
    }
    return -1;
  };
  assert.equal(
    codeOf(() => auth.authorize(md(), ['client'])),
    grpc.status.UNAUTHENTICATED,
  );
  assert.equal(
    codeOf(() => auth.authorize(md('x'), ['client'])),
    grpc.status.UNAUTHENTICATED,
  );
  assert.equal(
    codeOf(() => auth.authorize(md(a.tokens.worker), ['client'])),
    grpc.status.PERMISSION_DENIED,
  );
  assert.equal(new Authenticator(null).authorize(md(), ['worker']), null);
});

test('NATS names derive from one prefix; bad prefixes and ids are refused', () => {
  const n = natsNames('t1');
  assert.equal(n.eventsStream, 'T1_EVENTS');
  assert.equal(n.jobEvent('j1', 'round.merged'), 't1.job.j1.round.merged');
  assert.equal(n.jobFilter('j1'), 't1.job.j1.>');
  assert.throws(() => natsNames('a.b'), /prefix/);
  assert.throws(() => n.jobEvent('a.b', 'x'), /subject token/);
  const ev = makeEvent('metrics', 'j1', {
    shardId: 's',
    task: 't',
    replica: 0,
    step: 1,
    totalSteps: 2,
    loss: 1,
    lr: 0.1,
    p: 0.5,
    tokens: 3,
    tokensPerSec: 4,
    activeLayers: [0],
  });
  assert.deepEqual(parseEvent(JSON.stringify(ev)), ev);
  assert.throws(() => parseEvent(JSON.stringify({ ...ev, type: 'nope' })), /unknown event type/);
  assert.throws(() => parseEvent(JSON.stringify({ ...ev, data: { ...ev.data, step: 'x' } })));
});

test('adapters and checkpoints survive the object-store encoding exactly', () => {
  const adapter = {
    config: { r: 2, loraAlpha: 4, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
    modules: new Map([
      [
        'model.layers.0.self_attn.q_proj',
        {
          a: Float32Array.from([1, 2, 3, 4, 5, 6]),
          b: Float32Array.from([0.5, -1, 2, 3]),
          rank: 2,
          inFeatures: 3,
          outFeatures: 2,
          scaling: 2,
        },
      ],
    ]),
  };
  const back = adapterFromObjectBytes(adapterToObjectBytes(adapter), 'x');
  assert.deepEqual(back, adapter);
  const state = {
    step: 5,
    params: Float32Array.from([1, 2]),
    expAvg: Float32Array.from([3, 4]),
    expAvgSq: Float32Array.from([5, 6]),
    moduleSteps: [4],
    cursor: { epoch: 1, index: 2 },
    activation: { numLayers: 1, steps: 5, counts: [4] },
    seed: 9,
  };
  assert.deepEqual(decodeCheckpoint(encodeCheckpoint(state), 'c'), state);
});

test('--devices parsing', () => {
  assert.deepEqual(
    parseDevices('cpu:2').map((d) => d.id),
    ['cpu:0', 'cpu:1'],
  );
  assert.deepEqual(
    parseDevices('gpu:0,3').map((d) => [d.id, d.kind, d.index]),
    [
      ['gpu:0', 'gpu', 0],
      ['gpu:3', 'gpu', 3],
    ],
  );
  assert.throws(() => parseDevices('tpu:1'), /--devices/);
});

test('gradient totals: durable encoding round-trips; durable lookups only when a replay may need them', async () => {
  const { encodeTotal, decodeTotal } = await import('../../coordinator/sync.ts');
  const sums = Float32Array.from([1.5, -2.25, 3e-8]);
  const t = { step: 4, sums: new Uint8Array(sums.buffer), tokens: 17, lossSum: 3.25 };
  const back = decodeTotal(4, encodeTotal(t));
  assert.deepEqual(new Float32Array(back.sums.buffer, back.sums.byteOffset, 3), sums);
  assert.equal(back.tokens, 17);
  assert.equal(back.lossSum, 3.25);
  const agg = new GradientAggregator(2);
  assert.ok(agg.mayBeDurable(10), 'a fresh coordinator may have lost totals');
  agg.add(10, { replica: 0, sums: new Uint8Array(12), tokens: 1, lossSum: 0 });
  agg.add(10, { replica: 1, sums: new Uint8Array(12), tokens: 1, lossSum: 0 });
  assert.equal(agg.mayBeDurable(11), false, 'the next step is new work, not a replay');
  assert.equal(agg.mayBeDurable(7), true, 'a step before anything computed here');
});

test('NATS URLs lose their credentials before they reach a message', async () => {
  const { redactUrl } = await import('../../coordinator/nats-store.ts');
  assert.equal(redactUrl('nats://alice:s3cret@nats.example:4222'), 'nats://***@nats.example:4222');
  assert.equal(redactUrl('nats://tok@a:4222,nats://b:4222'), 'nats://***@a:4222,nats://b:4222');
  assert.equal(redactUrl('nats://127.0.0.1:4222'), 'nats://127.0.0.1:4222');
});

test('GPU runner processes do not inherit the worker token or NATS secrets', async () => {
  const { runnerEnv } = await import('../../worker/runner-host.ts');
  const env = runnerEnv({
    PATH: '/bin',
    CHORUS_TOKEN: 't',
    CHORUS_WORKER_TOKEN: 'w',
    CHORUS_CLIENT_TOKEN: 'c',
    NATS_TOKEN: 'n',
    NATS_PASSWORD: 'p',
    CHORUS_BACKEND: 'wasm',
  });
  assert.deepEqual(env, { PATH: '/bin', CHORUS_BACKEND: 'wasm' });
});

test('TLS files: a missing one is named with its flag; cert and key go together', async () => {
  const { clientTlsFiles } = await import('../../shared/client/tls.ts');
  const { serverCredentials } = await import('../../coordinator/server.ts');
  assert.equal(clientTlsFiles({}), null);
  assert.throws(
    () => clientTlsFiles({ tlsCa: '/nonexistent/ca.pem' }),
    /--tls-ca: cannot read \/nonexistent\/ca\.pem \(ENOENT\)/,
  );
  assert.throws(() => clientTlsFiles({ tlsCert: 'c.pem' }), /--tls-cert and --tls-key go together/);
  assert.throws(
    () => serverCredentials({ cert: '/nonexistent/cert.pem', key: 'k' }),
    /--tls-cert: cannot read \/nonexistent\/cert\.pem/,
  );
});

test('tokens: a token file others can read, or one with a non-string token, is refused', async () => {
  const { writeFileSync } = await import('node:fs');
  const open = join(tmp(), 'tokens.json');
  writeFileSync(open, JSON.stringify({ client: 'c1', worker: 'w1' }), { mode: 0o644 });
  assert.throws(() => loadTokens({ tokenFile: open }), /readable by other users: chmod 600/);
  const bad = join(tmp(), 'tokens.json');
  writeFileSync(bad, JSON.stringify({ client: 5, worker: 'w1' }), { mode: 0o600 });
  assert.throws(() => loadTokens({ tokenFile: bad }), /"client" must be a non-empty string/);
});
