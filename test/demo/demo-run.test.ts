// `npm start` end to end, shortened (--steps 6): real NATS, coordinator and worker processes, the
// demo job through the gRPC client; it must exit 0, print the table and leave the PEFT artifacts.
// The printed figures are checked: the table equals scores.json, and every cell is recomputed from
// the downloaded adapters with an independent greedy decoder (test/demo/greedy.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TASK_OPS } from '../../demo/tasks.ts';
import { readExamples } from '../../demo/engine-score.ts';
import { initEngine } from '../../shared/tensor/engine.ts';
import { loadBaseModel } from '../../shared/train/load.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { greedyCorrect } from './greedy.ts';

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
    const printed = new Map<string, string[]>();
    for (const op of TASK_OPS) {
      const row = new RegExp(
        `\\n${op.name}\\s+${op.description.replace(/[()]/g, '.')}\\s+(\\d+\\.\\d%)\\s+(\\d+\\.\\d%)\\s+(\\d+\\.\\d%)`,
      ).exec(out);
      assert.ok(row, `table row for ${op.name}:\n${out}`);
      printed.set(op.name, row.slice(1));
    }
    const [jobId] = readdirSync(runs);
    const dir = join(runs, jobId);
    for (const name of [...TASK_OPS.map((o) => o.name), 'merged']) {
      assert.ok(existsSync(join(dir, name, 'adapter_model.safetensors')), `${name} adapter`);
      const cfg = JSON.parse(readFileSync(join(dir, name, 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.peft_type, 'LORA');
    }
    const scores = JSON.parse(readFileSync(join(dir, 'scores.json'), 'utf8')) as Array<{
      task: string;
      base: number;
      adapter: number;
      merged: number;
      n: number;
    }>;
    assert.deepEqual(
      scores.map((r) => r.task),
      TASK_OPS.map((o) => o.name),
    );
    // The table prints scores.json, and scores.json holds what the adapters really score.
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    await initEngine('wasm', { quiet: true });
    const model = await loadBaseModel(join(root, 'demo/base'));
    const merged = LoraRuntime.fromAdapter(model, await readPeftAdapter(join(dir, 'merged')));
    for (const r of scores) {
      assert.deepEqual(printed.get(r.task), [pct(r.base), pct(r.adapter), pct(r.merged)], r.task);
      const examples = readExamples(join(root, `demo/data/${r.task}.eval.jsonl`));
      assert.equal(r.n, examples.length);
      const own = LoraRuntime.fromAdapter(model, await readPeftAdapter(join(dir, r.task)));
      const recomputed = [undefined, own, merged].map((lora) => greedyCorrect(model, examples, lora) / examples.length);
      assert.deepEqual([r.base, r.adapter, r.merged], recomputed, `${r.task}: base, task adapter, merged`);
      own.dispose();
    }
    merged.dispose();
    model.dispose();
    assert.ok(existsSync(join(dir, 'report.json')));
    assert.ok(existsSync(join(dir, 'logs', 'coordinator.log')));
  } finally {
    rmSync(runs, { recursive: true, force: true });
  }
});
