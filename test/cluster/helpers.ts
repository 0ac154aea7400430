// Fixtures for cluster tests: a tiny model directory and data on disk, and real processes — the
// coordinator and workers run as `node bin/chorus.mjs …` on loopback against the NATS server at
// NATS_URL (default 127.0.0.1:4222), each test under its own NATS prefix.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeLlamaConfig, llamaConfigToJson } from '../../shared/model/config.ts';
import { initRandomWeights } from '../../shared/model/llama.ts';
import { writeHfModelDir } from '../../shared/formats/hf-model.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import { ChorusClient } from '../../shared/client/index.ts';
import { connect } from 'nats';
import { generate, TASK_OPS } from '../../demo/tasks.ts';
import { deleteNatsPrefix } from '../../coordinator/nats-store.ts';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
export const TOKENS = { client: 'test-client-token-1', worker: 'test-worker-token-2' };

export function tmp(prefix = 'chorus-cluster-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const TINY = { hidden: 16, layers: 2, heads: 2, kvHeads: 1, vocab: 32, intermediate: 32 };

export async function writeTinyModel(dir: string, seed = 7): Promise<string> {
  const config = makeLlamaConfig({
    hiddenSize: TINY.hidden,
    numHiddenLayers: TINY.layers,
    numAttentionHeads: TINY.heads,
    numKeyValueHeads: TINY.kvHeads,
    vocabSize: TINY.vocab,
    intermediateSize: TINY.intermediate,
  });
  await writeHfModelDir(dir, llamaConfigToJson(config), initRandomWeights(config, seed));
  return dir;
}

/** A learnable task: sequences that count up by `stride` mod vocab. */
/** train.jsonl and eval.jsonl of one demo task (demo/tasks.ts) in dir, drawn with seeds 1 and 2. */
export function writeDemoTask(dir: string, task: string, trainCount: number, evalCount: number): void {
  const op = TASK_OPS.find((o) => o.name === task)!;
  const lines = (n: number, seed: number) =>
    generate(op, n, seed)
      .map((e) => JSON.stringify(e))
      .join('\n') + '\n';
  writeFileSync(join(dir, 'train.jsonl'), lines(trainCount, 1));
  writeFileSync(join(dir, 'eval.jsonl'), lines(evalCount, 2));
}

export function writeTaskData(file: string, n: number, len: number, stride: number, seed = 1): string {
  const rng = new SplitMix32(seed);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const start = rng.next() % TINY.vocab;
    lines.push(JSON.stringify({ input_ids: Array.from({ length: len }, (_, t) => (start + t * stride) % TINY.vocab) }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/**
 * Token data of lengths in [minLen, maxLen] with a masked "prompt" of 1–3 tokens: variable token
 * counts per batch (padding and truncation at seq_len 8 included).
 */
export function writeMaskedTaskData(file: string, n: number, minLen: number, maxLen: number, seed = 1): string {
  const rng = new SplitMix32(seed);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = minLen + (rng.next() % (maxLen - minLen + 1));
    const prompt = 1 + (rng.next() % 3);
    const start = rng.next() % TINY.vocab;
    lines.push(
      JSON.stringify({
        input_ids: Array.from({ length: len }, (_, t) => (start + 3 * t) % TINY.vocab),
        loss_mask: Array.from({ length: len }, (_, t) => (t < prompt ? 0 : 1)),
      }),
    );
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** Resolves with `p`, or fails after `ms` naming what it waited for, with the processes' last output. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string, procs: Proc[] = []): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const logs = procs.map((x) => `--- ${x.child.spawnargs.slice(2, 4).join(' ')}\n${x.output().slice(-3000)}`);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}\n${logs.join('\n')}`));
    }, ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Polls the job record until replica `replica` of its first task has reached `step`; fails when the
 * job ends first (the action meant to happen mid-job would never happen) or after `ms`.
 */
export async function whenStep(c: ChorusClient, id: string, replica: number, step: number, ms = 120_000) {
  const start = Date.now();
  for (;;) {
    const job = await c.get(id);
    const shard = job.shards.find((s) => s.replica === replica);
    if (shard && shard.step >= step) return job;
    if (['succeeded', 'failed', 'cancelled'].includes(job.state))
      throw new Error(`job ${id} ended (${job.state}) before replica ${replica} reached step ${step}`);
    if (Date.now() - start > ms) throw new Error(`replica ${replica} of ${id} did not reach step ${step} in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function uniquePrefix(): string {
  return `t${randomBytes(4).toString('hex')}`;
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function chorus(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [join(ROOT, 'bin/chorus.mjs'), ...args], {
    cwd: ROOT,
    env: { ...process.env, CHORUS_BACKEND: process.env.CHORUS_TEST_BACKEND ?? 'wasm', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

export async function startCoordinator(prefix: string, extra: string[] = []): Promise<Proc & { address: string }> {
  const p = chorus([
    'coordinator',
    '--listen',
    '127.0.0.1:0',
    '--nats',
    NATS_URL,
    '--prefix',
    prefix,
    '--client-token',
    TOKENS.client,
    '--worker-token',
    TOKENS.worker,
    '--heartbeat-timeout',
    '2s',
    ...extra,
  ]);
  const address = await waitFor(p, /ready (\S+)/, 30_000);
  return { ...p, address };
}

export async function startCoordinatorAt(prefix: string, address: string): Promise<Proc & { address: string }> {
  // Reuse the port: workers reconnect to the address they know.
  for (let i = 0; i < 20; i++) {
    const p = chorus([
      'coordinator',
      '--listen',
      address,
      '--nats',
      NATS_URL,
      '--prefix',
      prefix,
      '--client-token',
      TOKENS.client,
      '--worker-token',
      TOKENS.worker,
      '--heartbeat-timeout',
      '2s',
    ]);
    try {
      await waitFor(p, /ready (\S+)/, 30_000);
      return { ...p, address };
    } catch (err) {
      if (!/cannot listen/.test(p.output())) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`could not bind ${address} again`);
}

/** Test data lives in temporary directories: workers may read job inputs there (`--data-root`). */
export const DATA_ROOT = ['--data-root', tmpdir()];

export function startWorker(address: string, name: string, devices = 'cpu:1', extra: string[] = DATA_ROOT): Proc {
  return chorus([
    'worker',
    '--coordinator',
    address,
    '--devices',
    devices,
    '--name',
    name,
    '--token',
    TOKENS.worker,
    ...extra,
  ]);
}

export function waitFor(p: Proc, re: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      const m = re.exec(p.output());
      if (m) return resolve(m[1] ?? m[0]);
      if (p.child.exitCode !== null)
        return reject(new Error(`process exited (${p.child.exitCode}) before ${re}:\n${p.output()}`));
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${re}:\n${p.output()}`));
      setTimeout(check, 50);
    };
    check();
  });
}

export function client(address: string, token = TOKENS.client): ChorusClient {
  return new ChorusClient({ address, token });
}

export function waitWorkers(c: ChorusClient, n: number, timeoutMs = 30_000): Promise<void> {
  return c.waitForWorkers(n, timeoutMs);
}

export async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode) return;
      p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), 8000);
      await p.exited;
      clearTimeout(t);
    }),
  );
}

/** Deletes the test's streams, buckets and object store. */
export async function cleanNats(prefix: string): Promise<void> {
  const nc = await connect({ servers: NATS_URL });
  try {
    await deleteNatsPrefix(nc, prefix);
  } finally {
    await nc.close();
  }
}

/**
 * The training block most cluster jobs share: batches of 4 × 8 tokens, lr 0.01, no warmup, no
 * evaluations, a checkpoint every `checkpointEvery` steps.
 */
export function smallTraining(steps: number, checkpointEvery: number) {
  return {
    steps,
    batch_size: 4,
    seq_len: 8,
    lr: 0.01,
    warmup_steps: 0,
    eval_every: 0,
    checkpoint_every: checkpointEvery,
  };
}

export function jobSpec(dir: string, over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    name: 'cluster-test',
    base_model: join(dir, 'model'),
    seed: 5,
    lora: { r: 4, alpha: 8, target_modules: ['q_proj', 'v_proj'] },
    training: { ...smallTraining(6, 2), log_every: 1 },
    ...over,
  });
}
