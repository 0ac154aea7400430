// `npm start` end to end, shortened (--steps 6): real NATS, coordinator and worker processes, the
// demo job through the gRPC client; it must exit 0, print the table and leave the PEFT artifacts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TASK_OPS } from '../../demo/tasks.ts';

const root = new URL('../..', import.meta.url).pathname;

test('the demo runs a short job to the end and prints the score table', { timeout: 300_000 }, async () => {
  const runs = mkdtempSync(join(tmpdir(), 'chorus-demo-run-'));
  try {
    const demo = spawn(
      process.execPath,
      ['--import', 'tsx', 'cli/demo/main.ts', '--steps', '6', '--dashboard-port', '0', '--runs', runs],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    demo.stdout!.on('data', (b) => (out += b));
    demo.stderr!.on('data', (b) => (out += b));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (c) => resolve(c)));
    // While the job runs, the coordinator's dashboard shows it and its metrics.
    let seen: { jobs: Array<{ name: string }>; metrics: string } | null = null;
    while (demo.exitCode === null && !seen) {
      const [, url, token] = /dashboard {2}(http:\/\/[^/\s]+)\/\?token=(\S+)/.exec(out) ?? [];
      if (url && /running: 6 shard/.test(out)) {
        // The dashboard needs its token.
        assert.equal((await fetch(`${url}/api/jobs`)).status, 401);
        const headers = { authorization: `Bearer ${token}` };
        const jobs = await (await fetch(`${url}/api/jobs`, { headers })).json();
        const metrics = await (await fetch(`${url}/metrics`, { headers })).text();
        seen = { jobs, metrics };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const code = await exited;
    assert.ok(seen, `the dashboard answered while the job ran:\n${out}`);
    assert.equal(seen.jobs[0].name, 'chorus-demo');
    assert.match(seen.metrics, /^chorus_workers_alive 2$/m);
    assert.match(seen.metrics, /^chorus_jobs\{state="running"\} 1$/m);
    assert.equal(code, 0, out);
    assert.match(out, /coordinator pid \d+, gRPC on 127\.0\.0\.1:\d+/);
    assert.match(out, /dashboard  http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{32}   \(served by the coordinator/);
    // Not a TTY here: progress comes as plain lines with loss and p(t).
    assert.match(out, /revup\/r0 step \d+\/6 loss \d+\.\d{4} p\(t\) \d\.\d\d/);
    assert.match(out, /task\s+rule\s+base\s+task adapter\s+merged \(linear\)/);
    for (const op of TASK_OPS)
      assert.match(
        out,
        new RegExp(
          `\\n${op.name}\\s+${op.description.replace(/[()]/g, '.')}\\s+\\d+\\.\\d%\\s+\\d+\\.\\d%\\s+\\d+\\.\\d%`,
        ),
      );
    const [jobId] = readdirSync(runs);
    const dir = join(runs, jobId);
    for (const name of [...TASK_OPS.map((o) => o.name), 'merged']) {
      assert.ok(existsSync(join(dir, name, 'adapter_model.safetensors')), `${name} adapter`);
      const cfg = JSON.parse(readFileSync(join(dir, name, 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.peft_type, 'LORA');
    }
    const scores = JSON.parse(readFileSync(join(dir, 'scores.json'), 'utf8'));
    assert.deepEqual(
      scores.map((r: { task: string }) => r.task),
      TASK_OPS.map((o) => o.name),
    );
    assert.ok(existsSync(join(dir, 'report.json')));
    assert.ok(existsSync(join(dir, 'logs', 'coordinator.log')));
  } finally {
    rmSync(runs, { recursive: true, force: true });
  }
});
