// A real 3-node NATS JetStream cluster on loopback for the failover tests: three `nats-server`
// processes started from infra/nats/cluster.conf (the file compose uses), with their client,
// route and monitoring ports and file-storage directories overridden on the command line.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { ROOT } from './helpers.ts';

export interface NatsNode {
  name: string;
  clientPort: number;
  url: string;
  child: ChildProcess;
  output: () => string;
}

export interface NatsCluster {
  nodes: NatsNode[];
  /** Every node's client URL, comma-separated (what --nats takes). */
  urls: string;
  /** SIGKILL one node: no goodbye to clients or peers. */
  kill(name: string): Promise<void>;
  /** Starts a stopped node again on its ports and store directory, and waits for a healthy cluster. */
  restart(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once('exit', () => r()));
}

export async function startNatsCluster(): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-nats-cluster-'));
  const ports = await Promise.all(
    [0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort(), http: await freePort() })),
  );
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`).join(',');
  const spawnNode = (i: number): NatsNode => {
    const p = ports[i];
    const name = `nats-${i + 1}`;
    const child = spawn(
      'nats-server',
      [
        '-c',
        join(ROOT, 'infra/nats/cluster.conf'),
        '-a',
        '127.0.0.1',
        '-p',
        String(p.client),
        '-m',
        String(p.http),
        '--cluster',
        `nats://127.0.0.1:${p.route}`,
        '--routes',
        routes,
      ],
      {
        env: { ...process.env, NATS_SERVER_NAME: name, NATS_STORE_DIR: join(dir, name) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    return { name, clientPort: p.client, url: `nats://127.0.0.1:${p.client}`, child, output: () => out };
  };
  const nodes: NatsNode[] = ports.map((_, i) => spawnNode(i));
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    async kill(name) {
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new Error(`no NATS node ${name}`);
      node.child.kill('SIGKILL');
      await exited(node.child);
    },
    async restart(name) {
      const i = nodes.findIndex((n) => n.name === name);
      if (i < 0) throw new Error(`no NATS node ${name}`);
      if (nodes[i].child.exitCode === null && nodes[i].child.signalCode === null) throw new Error(`${name} still runs`);
      nodes[i] = spawnNode(i);
      await waitForJetStreamCluster(cluster);
    },
    async stop() {
      for (const n of nodes) n.child.kill('SIGTERM');
      await Promise.all(nodes.map((n) => exited(n.child)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForJetStreamCluster(cluster);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Waits until the meta group has a leader and all three peers (streams with 3 replicas can be made). */
async function waitForJetStreamCluster(cluster: NatsCluster, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  let last = '';
  while (Date.now() - started < timeoutMs) {
    for (const n of cluster.nodes)
      if (n.child.exitCode !== null && n.child.signalCode === null && n.child.exitCode !== 0)
        throw new Error(`${n.name} exited (${n.child.exitCode}):\n${n.output()}`);
    try {
      const up = cluster.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
      const nc = await connect({ servers: up.map((n) => n.url), reconnect: false, timeout: 1000 });
      try {
        const jsm = await nc.jetstreamManager({ timeout: 1000 });
        // A probe stream with 3 replicas can only be made once the meta group has a leader and all peers.
        const probe = `PROBE_${Date.now()}`;
        await jsm.streams.add({ name: probe, subjects: [`probe.${Date.now()}`], num_replicas: 3 });
        await jsm.streams.delete(probe);
        return;
      } finally {
        await nc.close();
      }
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`NATS cluster not ready after ${timeoutMs} ms (${last}):\n${cluster.nodes[0].output()}`);
}
