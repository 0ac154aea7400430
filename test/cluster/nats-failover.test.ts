// The coordinator on a 3-node NATS JetStream cluster (real nats-server processes on loopback,
// started from infra/nats/cluster.conf) with every stream, bucket and the object store at 3
// replicas. The NATS node holding the coordinator's connection is killed with SIGKILL in the middle
// of a gradient-synced 2-replica job: the job must still succeed, and `chorus watch` must replay
// every event once, in order. Then the coordinator's node stops answering and is killed while an
// adapter is being stored: the upload is retried and the stored bytes have the digest of the original.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { join } from 'node:path';
import { connect } from 'nats';
import { sha256Hex } from '../../shared/digest.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import * as h from './helpers.ts';
import { startNatsCluster, type NatsCluster } from './nats-cluster.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let nats: NatsCluster;
let coord: h.Proc & { address: string };
const procs: h.Proc[] = [];
const STEPS = 30;

before(async () => {
  nats = await startNatsCluster();
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1, 4);
  const p = h.chorus([
    'coordinator',
    '--listen',
    '127.0.0.1:0',
    '--nats',
    nats.urls,
    '--nats-replicas',
    '3',
    '--prefix',
    prefix,
    '--client-token',
    h.TOKENS.client,
    '--worker-token',
    h.TOKENS.worker,
    '--heartbeat-timeout',
    '5s',
  ]);
  procs.push(p);
  coord = { ...p, address: await h.waitFor(p, /ready (\S+)/, 30_000) };
  for (const name of ['n1', 'n2']) procs.push(h.startWorker(coord.address, name));
});

after(async () => {
  await h.stopAll(procs);
  await nats?.stop();
});

/** The NATS node the coordinator is on now, from its log ("NATS: connected to …" / "reconnected to …"). */
function coordinatorNode(): string {
  const all = [...coord.output().matchAll(/NATS: (?:re)?connected to (\S+)/g)];
  assert.ok(all.length > 0, `the coordinator names its NATS node:\n${coord.output()}`);
  return all[all.length - 1][1];
}

function dump(): string {
  return [
    ...procs.map((p) => `--- ${p.child.spawnargs.slice(2, 3).join(' ')}\n${p.output().slice(-4000)}`),
    ...nats.nodes.map((n) => `--- ${n.name}\n${n.output().slice(-2000)}`),
  ].join('\n');
}

test('the NATS node under the coordinator is killed mid-job: the job succeeds and watch replays every event once, in order', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 2);
    const id = await c.submit(
      h.jobSpec(dir, {
        training: { ...h.smallTraining(STEPS, 4), log_every: 1 },
        tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
        sync: { mode: 'gradients' },
      }),
    );
    const live: ChorusEvent[] = [];
    let killed = '';
    const watching = (async () => {
      for await (const ev of c.watch(id)) {
        live.push(ev);
        if (!killed && ev.type === 'metrics' && ev.data.step >= 6) {
          killed = coordinatorNode();
          await nats.kill(killed);
        }
        if (ev.type === 'job.state' && ['succeeded', 'failed', 'cancelled'].includes(ev.data.state)) return;
      }
    })();
    await Promise.race([
      watching,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 120_000).unref()),
    ]).catch((err) => assert.fail(`${err.message}\n${dump()}`));
    const job = await c.get(id);
    assert.ok(killed, 'a NATS node was killed mid-job');
    assert.equal(job.state, 'succeeded', `${job.reason}\n${dump()}`);
    assert.notEqual(coordinatorNode(), killed, 'the coordinator moved to a surviving node');

    // A fresh `chorus watch` (replay from the stream, after the failover) sees the whole job.
    const w = h.chorus(['watch', id, '--json', '--coordinator', coord.address, '--token', h.TOKENS.client]);
    assert.equal(await w.exited, 0, w.output());
    const replay = w
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as ChorusEvent);
    const last = replay[replay.length - 1];
    assert.ok(
      last?.type === 'job.state' && last.data.state === 'succeeded',
      `the replay runs to the job's end:\n${w.output()}\n${dump()}`,
    );
    const seqs = replay.map((e) => e.seq!);
    assert.ok(
      seqs.every((s, i) => i === 0 || s > seqs[i - 1]),
      `events in stream order: ${seqs.join(',')}`,
    );
    // Exactly one of each state change, in the order the job went through them.
    const states = replay.flatMap((e) => (e.type === 'job.state' ? [e.data.state] : []));
    assert.deepEqual(states, ['queued', 'running', 'merging', 'succeeded']);
    // Every step of both replicas reported once: none lost in the failover, none published twice.
    for (const replica of [0, 1]) {
      const steps = replay.flatMap((e) => (e.type === 'metrics' && e.data.replica === replica ? [e.data.step] : []));
      assert.deepEqual(
        steps,
        Array.from({ length: STEPS }, (_, i) => i + 1),
        `replica ${replica}'s metrics`,
      );
    }
    for (const type of ['job.submitted', 'merge.done', 'report.ready'])
      assert.equal(replay.filter((e) => e.type === type).length, 1, type);
    // The watch that was live across the failover saw the same events (its consumer was recreated).
    assert.deepEqual(
      live.map((e) => e.seq),
      seqs,
    );
    const finals = await Promise.all([0, 1].map((r) => c.downloadBlob(objectNames.shardFinal(id, 'a', r))));
    assert.equal(Buffer.compare(finals[0], finals[1]), 0, 'replicas agree bit for bit');
  } finally {
    c.close();
  }
});

/**
 * A TCP relay in front of `target`: it passes what its clients send until `holdAfter` bytes have
 * gone by, then reads nothing more from them until release(). `passed()` counts the bytes handed
 * on to `target`; it reads from a client only once `target` has taken the previous read.
 */
async function holdingRelay(target: string, holdAfter: number) {
  const { hostname, port } = new URL(`tcp://${target}`);
  let passed = 0;
  let holding = true;
  let reached = () => {};
  const held = new Promise<void>((r) => (reached = r));
  const clients: net.Socket[] = [];
  const server = net.createServer((down) => {
    const up = net.connect(Number(port), hostname);
    clients.push(down);
    const go = () => void (holding && passed >= holdAfter ? reached() : down.resume());
    down.on('data', (d) => {
      down.pause();
      passed += d.length;
      if (up.write(d)) go();
      else up.once('drain', go);
    });
    up.on('data', (d) => down.write(d));
    for (const [a, b] of [
      [down, up],
      [up, down],
    ]) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    held,
    passed: () => passed,
    release() {
      holding = false;
      for (const d of clients) d.resume();
    },
    close() {
      for (const d of clients) d.destroy();
      server.close();
    },
  };
}

test('a NATS node stops answering, then is killed, while an adapter is being stored: the upload is retried and the digest matches', async () => {
  // Three nodes again (the one killed above comes back and catches up), so losing one keeps a quorum.
  for (const n of nats.nodes) if (n.child.exitCode !== null || n.child.signalCode !== null) await nats.restart(n.name);
  // The upload goes through a relay that holds it after its first 4 MiB: the coordinator's put has
  // begun and cannot end before the rest is let through.
  const relay = await holdingRelay(coord.address, 4 << 20);
  const c = h.client(relay.address);
  const watcher = await connect({ servers: nats.urls });
  const node = nats.nodes.find((n) => n.name === coordinatorNode())!;
  let frozen = false;
  try {
    const adapter = randomBytes(24 << 20);
    const name = `uploads/${sha256Hex(adapter)}/adapter_model.safetensors`;
    const sub = watcher.subscribe(`$O.${prefix}_artifacts.C.>`, { max: 1 });
    const uploading = c.uploadBlob(name, adapter);
    await h.withDeadline(relay.held, 60_000, 'the first 4 MiB of the upload', procs);
    // The put's first chunk has reached the stream: freeze the coordinator's node (SIGSTOP). What
    // the coordinator publishes from now on is never acknowledged by that node.
    await h.withDeadline(
      (async () => {
        for await (const _ of sub) break;
      })(),
      60_000,
      "the put's first chunk in the stream",
      procs,
    );
    node.child.kill('SIGSTOP');
    frozen = true;
    // Let the other 20 MiB through. Once the relay has handed all of it on, the coordinator has
    // taken in all but a few MiB of it (what the call's flow-control window, the sockets and the
    // store's 4-chunk queue hold) and published that, as chunks on its connection to the frozen
    // node that no acknowledgement can come back for.
    relay.release();
    await h.withDeadline(
      (async () => {
        while (relay.passed() < adapter.length) await new Promise((r) => setTimeout(r, 20));
      })(),
      60_000,
      'the whole upload to go through the relay',
      procs,
    );
    await new Promise((r) => setTimeout(r, 500));
    // Then the node goes for good: those chunks' acknowledgements are lost with it, so the put
    // fails and the uploader must send the whole object again, through another node.
    await nats.kill(node.name);
    frozen = false;
    const info = await h.withDeadline(uploading, 120_000, 'the upload, sent again', procs);
    assert.match(
      coord.output(),
      new RegExp(`NATS: storing ${name.replace(/[/.]/g, '\\$&')} failed .*retrying`),
      `the put cut off by the node loss was retried:\n${dump()}`,
    );
    assert.notEqual(coordinatorNode(), node.name, 'the coordinator moved to a surviving node');
    assert.equal(info.sha256, sha256Hex(adapter));
    const back = await c.downloadBlob(name);
    assert.equal(sha256Hex(back), sha256Hex(adapter), 'the stored object is the uploaded adapter');
  } finally {
    if (frozen) await nats.kill(node.name);
    await watcher.close();
    c.close();
    relay.close();
  }
});
