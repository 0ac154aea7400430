// `npm start` stopped with Ctrl-C (SIGINT) mid-job leaves no process behind: the coordinator and
// worker process groups (with their runners) are all gone when the demo exits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('Ctrl-C during the demo stops every process it started', { timeout: 180_000 }, async () => {
  const runs = mkdtempSync(join(tmpdir(), 'chorus-demo-int-'));
  const demo = spawn(
    process.execPath,
    ['--import', 'tsx', 'cli/demo/main.ts', '--no-dashboard', '--steps', '400', '--runs', runs],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  let out = '';
  demo.stdout!.on('data', (b) => (out += b));
  demo.stderr!.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 150_000;
    // Wait until training runs: every child is up and busy.
    while (!/step \d+\/400/.test(out) && !/running/.test(out.split('submitted job')[1] ?? '')) {
      if (Date.now() > deadline || demo.exitCode !== null) assert.fail(`demo did not reach training:\n${out}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(pids.length >= 3, `coordinator and two workers announced their pids:\n${out}`);
    assert.ok(pids.every(alive));
    demo.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 130);
    assert.match(out, /SIGINT, stopping the cluster/);
    assert.doesNotMatch(out, /\n\s+at /, 'no stack trace');
    const stillAlive = pids.filter(alive);
    assert.deepEqual(stillAlive, [], 'no process left behind');
    // Their process groups are empty too (runner children of the workers).
    for (const pid of pids) {
      assert.throws(() => process.kill(-pid, 0), `process group ${pid} is gone`);
    }
  } finally {
    if (demo.exitCode === null) process.kill(-demo.pid!, 'SIGKILL');
    rmSync(runs, { recursive: true, force: true });
  }
});
