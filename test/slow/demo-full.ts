// `npm run test:demo-full` (opt-in, not part of `npm test`): the README's demo figures, checked.
//   1. The full `npm start` (demo/job.yaml, 300 steps): scores.json must equal the README's table,
//      cell for cell (the figures are deterministic: seeded data, init, CoTo masks and dropout, and
//      gradient sync sums in a fixed order).
//   2. Retraining the base (`node --import tsx demo/pretrain.ts`) reproduces the committed
//      demo/base/model.safetensors bit for bit.
// About 2 minutes for (1) and 4 for (2) on an idle 2-core machine. Wall times are printed as
// diagnostics, never asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string; seconds: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`${args.join(' ')} ran past ${timeoutMs / 1000} s:\n${out.slice(-4000)}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, seconds: (Date.now() - started) / 1000 });
    });
  });
}

/** The README's demo table: task → [base, task adapter, merged] as printed ("100.0%"). */
function readmeTable(): Map<string, string[]> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /What it printed here[\s\S]*?```\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has the demo table under "What it printed here"');
  const rows = new Map<string, string[]>();
  for (const line of block[1].split('\n')) {
    const m = /^(\w+)\s.*?\s(\d+\.\d%)\s+(\d+\.\d%)\s+(\d+\.\d%)\s*$/.exec(line);
    if (m) rows.set(m[1], [m[2], m[3], m[4]]);
  }
  assert.equal(rows.size, 3, `three task rows in:\n${block[1]}`);
  return rows;
}

test('the full demo prints the README table', { timeout: 3_600_000 }, async (t) => {
  const want = readmeTable();
  const runs = mkdtempSync(join(tmpdir(), 'chorus-demo-full-'));
  try {
    const r = await run(['cli/demo/main.ts', '--dashboard-port', '0', '--runs', runs], 3_500_000);
    assert.equal(r.code, 0, r.out.slice(-4000));
    t.diagnostic(`npm start: ${r.seconds.toFixed(0)} s wall`);
    const [jobId] = readdirSync(runs);
    const scores = JSON.parse(readFileSync(join(runs, jobId, 'scores.json'), 'utf8')) as Array<{
      task: string;
      base: number;
      adapter: number;
      merged: number;
    }>;
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    const got = new Map(scores.map((s) => [s.task, [pct(s.base), pct(s.adapter), pct(s.merged)]]));
    // On a mismatch, print the whole measured table: the README's is then stale (or the run broke).
    assert.deepEqual(got, want, `measured ${JSON.stringify([...got])}, README ${JSON.stringify([...want])}`);
  } finally {
    rmSync(runs, { recursive: true, force: true });
  }
});

test('retraining the demo base reproduces the committed weights bit for bit', { timeout: 3_600_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'chorus-pretrain-'));
  try {
    const r = await run(['demo/pretrain.ts', '--out', out], 3_500_000);
    assert.equal(r.code, 0, r.out.slice(-4000));
    t.diagnostic(`demo/pretrain.ts: ${r.seconds.toFixed(0)} s wall`);
    const committed = readFileSync(join(root, 'demo/base/model.safetensors'));
    const retrained = readFileSync(join(out, 'model.safetensors'));
    assert.ok(committed.equals(retrained), 'model.safetensors differs from the committed one');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
