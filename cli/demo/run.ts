// `npm start`: a whole Chorus run on this machine. NATS (found or started), a coordinator and two
// workers as real processes, the demo job submitted through the TypeScript client, progress from
// the job's event stream, a live dashboard, then the results downloaded and scored.
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { ChorusClient } from '../../shared/client/index.ts';
import { ChorusError } from '../../shared/errors.ts';
import { isTerminal } from '../../shared/nats/events.ts';
import { deleteNatsPrefix } from '../../coordinator/nats-store.ts';
import { createProgress } from '../../shared/progress/index.ts';
import { loadJobSpec } from '../../shared/job/parse.ts';
import { specToWire } from '../../shared/job/wire.ts';
import { initEngine } from '../../shared/tensor/engine.ts';
import { createScorer, readExamples } from '../../demo/engine-score.ts';
import { ALL_OPS } from '../../demo/tasks.ts';
import { ensureNats, freePort, portFree, type DemoNats } from './nats.ts';
import { startProcess, stopAll, waitForLine } from './processes.ts';
import { formatTable, type ScoreRow } from './table.ts';

export interface DemoOptions {
  root: string;
  spec: string;
  runsDir: string;
  workers: number;
  devicesPerWorker: number;
  /** Overrides training.steps of every task (quick checks). */
  steps?: number;
  dashboardPort: number | null;
  out: (line: string) => void;
}

interface Resources {
  nats?: DemoNats;
  nc?: NatsConnection;
  client?: ChorusClient;
  tmp?: string;
  prefix?: string;
}

const res: Resources = {};

/** Stops everything the demo started, in reverse order; safe to call twice. */
export async function cleanup(): Promise<void> {
  res.client?.close();
  res.client = undefined;
  await stopAll();
  if (res.nc) {
    // On a shared NATS server, remove what this run's private prefix created.
    if (res.prefix && res.nats && !res.nats.owned) await deleteNatsPrefix(res.nc, res.prefix).catch(() => {});
    await res.nc.close().catch(() => {});
  }
  res.nc = undefined;
  if (res.nats) await res.nats.stop();
  res.nats = undefined;
  if (res.tmp) rmSync(res.tmp, { recursive: true, force: true });
  res.tmp = undefined;
}

export async function runDemo(o: DemoOptions): Promise<void> {
  const t0 = Date.now();
  const secs = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
  const say = o.out;
  res.tmp = mkdtempSync(join(tmpdir(), 'chorus-demo-'));
  const logDir = join(res.tmp, 'logs');
  mkdirSync(logDir);

  // The spec is validated here (errors name the field) and sent with absolute paths.
  const spec = loadJobSpec(o.spec);
  if (o.steps) {
    const steps = o.steps;
    spec.tasks = spec.tasks.map((t) => {
      const warmupSteps = Math.min(t.training.warmupSteps, Math.floor(steps / 10));
      return { ...t, training: { ...t.training, steps, warmupSteps, checkpointEvery: 0 } };
    });
  }
  const shards = spec.tasks.reduce((n, t) => n + t.replicas, 0);
  if (o.workers * o.devicesPerWorker < shards) {
    throw new ChorusError(
      `the demo job has ${shards} shards but ${o.workers} workers × ${o.devicesPerWorker} devices give only ${o.workers * o.devicesPerWorker}`,
    );
  }

  say('Chorus demo: distributed LoRA training with CoTo on this machine');
  res.nats = await ensureNats();
  say(
    res.nats.owned
      ? `  NATS       started nats-server -js at ${res.nats.url} (pid ${res.nats.process!.pid}, store in a temp dir)`
      : `  NATS       using the server at ${res.nats.url}`,
  );
  res.prefix = `demo_${randomBytes(3).toString('hex')}`;
  const clientToken = randomBytes(16).toString('hex');
  // A read-only token that opens only the dashboard: printed in its address below.
  const httpToken = randomBytes(16).toString('hex');
  const workerToken = randomBytes(16).toString('hex');
  const bin = join(o.root, 'bin', 'chorus.mjs');

  // The coordinator serves the dashboard; a busy port is not worth failing the demo for.
  let dashboardPort: number | null = null;
  if (o.dashboardPort !== null) {
    dashboardPort = o.dashboardPort !== 0 && (await portFree(o.dashboardPort)) ? o.dashboardPort : await freePort();
  }
  const httpArgs = dashboardPort !== null ? ['--http', `127.0.0.1:${dashboardPort}`] : [];
  const coordinator = startProcess(
    'coordinator',
    [
      bin,
      'coordinator',
      '--listen',
      '127.0.0.1:0',
      '--nats',
      res.nats.url,
      '--prefix',
      res.prefix,
      '--token-file',
      join(res.tmp, 'tokens.json'),
      ...httpArgs,
    ],
    {
      env: { CHORUS_CLIENT_TOKEN: clientToken, CHORUS_WORKER_TOKEN: workerToken, CHORUS_HTTP_TOKEN: httpToken },
      logDir,
      cwd: o.root,
    },
  );
  const address = (await waitForLine(coordinator, /^ready (\S+)/, 60000))[1];
  say(`  coordinator pid ${coordinator.child.pid}, gRPC on ${address}`);
  res.client = new ChorusClient({ address, token: clientToken });

  // Workers read job inputs only under their data roots: the directories of this spec's inputs.
  const inputs = spec.tasks.flatMap((t) => [t.baseModel, t.data.train, ...(t.data.eval ? [t.data.eval] : [])]);
  const roots = [...new Set(inputs.map((p) => dirname(resolve(p))))].flatMap((d) => ['--data-root', d]);
  for (let i = 1; i <= o.workers; i++) {
    const w = startProcess(
      `worker-${i}`,
      [
        bin,
        'worker',
        '--coordinator',
        address,
        '--devices',
        `cpu:${o.devicesPerWorker}`,
        '--name',
        `worker-${i}`,
        ...roots,
      ],
      {
        env: { CHORUS_WORKER_TOKEN: workerToken },
        logDir,
        cwd: o.root,
      },
    );
    say(`  worker-${i}   pid ${w.child.pid}, ${o.devicesPerWorker} CPU runners`);
  }
  await res.client.waitForWorkers(o.workers, 60000);

  // Kept to remove this run's streams from a shared NATS server at the end.
  res.nc = await connect({ servers: res.nats.url });
  if (dashboardPort !== null)
    say(
      `  dashboard  http://127.0.0.1:${dashboardPort}/?token=${httpToken}   (served by the coordinator; metrics: /metrics with that bearer token)`,
    );

  const jobId = await res.client.submitSpec(spec, spec.name ?? 'demo');
  say(
    `\nsubmitted job ${jobId}: ${spec.tasks.map((t) => `${t.name}×${t.replicas}`).join(', ')} (${shards} shards)  [${secs()}]`,
  );
  const progress = createProgress(jobId, { out: process.stdout });
  let finalState = '';
  let reason = '';
  for await (const ev of res.client.watch(jobId)) {
    progress.handle(ev);
    if (ev.type === 'job.state' && isTerminal(ev.data.state)) {
      finalState = ev.data.state;
      reason = ev.data.reason;
      break;
    }
  }
  progress.close();
  const runDir = resolve(o.runsDir, jobId);
  mkdirSync(runDir, { recursive: true });
  const keepLogs = () => cpSync(logDir, join(runDir, 'logs'), { recursive: true });
  if (finalState !== 'succeeded') {
    keepLogs();
    throw new ChorusError(
      `job ${jobId} ${finalState || 'ended'}${reason ? `: ${reason}` : ''} (logs in ${relative(process.cwd(), join(runDir, 'logs'))})`,
    );
  }
  say(`\njob ${jobId} succeeded after ${secs()}; downloading its artifacts`);
  await res.client.downloadResult(jobId, runDir);
  writeFileSync(join(runDir, 'job.json'), specToWire(spec) + '\n');

  // Training is over: stop the cluster before scoring so the scorer has the CPUs.
  await stopAll();
  keepLogs();
  await cleanup();

  say('scoring the base model, each task adapter and the merged adapter …');
  await initEngine(undefined, { quiet: true });
  const scorer = await createScorer(spec.baseModel);
  const merged = spec.merge ? join(runDir, 'merged') : null;
  const rows: ScoreRow[] = [];
  for (const t of spec.tasks) {
    const examples = readExamples(t.data.eval ?? t.data.train);
    const base = await scorer.score(examples);
    const adapter = await scorer.score(examples, join(runDir, t.name));
    const mergedScore = merged ? await scorer.score(examples, merged) : null;
    rows.push({
      task: t.name,
      description: ALL_OPS.find((op) => op.name === t.name)?.description ?? '',
      base: base.accuracy,
      adapter: adapter.accuracy,
      merged: mergedScore?.accuracy ?? null,
      n: examples.length,
    });
  }
  writeFileSync(join(runDir, 'scores.json'), JSON.stringify(rows, null, 2) + '\n');
  say('');
  say(formatTable(rows, spec.merge ? spec.merge.method : null));
  const rel = relative(process.cwd(), runDir) || '.';
  say('');
  say(`artifacts in ${rel}/:`);
  const entries: Array<[string, string]> = spec.tasks.map((t) => [`${t.name}/`, `PEFT adapter of task ${t.name}`]);
  if (merged && spec.merge)
    entries.push(['merged/', `PEFT adapter merging the ${spec.tasks.length} task adapters (${spec.merge.method})`]);
  entries.push(['report.json', 'job report: per-task losses, per-layer CoTo activation counts and Shapley estimates']);
  entries.push(
    ['scores.json', 'the table above'],
    ['job.json', 'the job spec as submitted'],
    ['logs/', 'coordinator and worker logs'],
  );
  const w = Math.max(...entries.map((e) => e[0].length)) + 2;
  for (const [name, what] of entries) say(`  ${name.padEnd(w)}${what}`);
  say(`done in ${secs()}`);
}
