// The package as others install it: `npm pack` (its `prepare` builds dist/), the tarball installed
// into an empty plain-Node project (no tsx, no sources), and there: `chorus --help`, ChorusClient
// imported by package name from JavaScript and from TypeScript (the declaration files), and a real
// coordinator and worker started from the installed bin that train a tiny job — so the compiled CLI,
// the runner threads (.mjs entry points in dist/) and the merge threads all run as built.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from '../cluster/helpers.ts';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const dir = mkdtempSync(join(tmpdir(), 'chorus-pack-'));
const project = join(dir, 'consumer');
const prefix = h.uniquePrefix();
const procs: h.Proc[] = [];
let tarball = '';

before(async () => {
  const out = execFileSync(npm, ['pack', '--pack-destination', dir, '--json'], {
    cwd: h.ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [packed] = JSON.parse(out.slice(out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, packed.filename);
  const paths = packed.files.map((f) => f.path);
  assert.ok(
    paths.includes('dist/cli/main.js') && paths.includes('dist/shared/client/index.d.ts'),
    'built files packed',
  );
  assert.ok(paths.includes('dist/worker/runner/thread.mjs'), 'thread entry points packed beside their modules');
  assert.ok(!paths.some((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')), 'no TypeScript sources in the package');
  execFileSync('mkdir', ['-p', project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // The registry is the only network allowed; the local cache answers what it can.
  execFileSync(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const bin = () => join(project, 'node_modules', '.bin', 'chorus');

function installed(args: string[]): h.Proc {
  // A plain Node environment: no tsx loader, cwd outside the checkout.
  const child = spawn(bin(), args, {
    cwd: project,
    env: { ...process.env, NODE_OPTIONS: '', CHORUS_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

test('the installed package has no TypeScript runtime and runs `chorus --help` from dist/', () => {
  assert.ok(!existsSync(join(project, 'node_modules', 'tsx')), 'tsx is a dev dependency only');
  assert.ok(!existsSync(join(project, 'node_modules', 'chorus', 'cli', 'main.ts')));
  const help = execFileSync(bin(), ['--help'], { cwd: project, encoding: 'utf8' });
  assert.match(help, /Usage: chorus/);
  for (const cmd of ['coordinator', 'worker', 'submit', 'watch']) assert.match(help, new RegExp(`\\n  ${cmd} `));
});

test('ChorusClient imports by package name in plain JavaScript and in TypeScript', () => {
  writeFileSync(
    join(project, 'client.mjs'),
    `import { ChorusClient, isTerminal } from 'chorus';\nimport { natsNames } from 'chorus/subjects';\n` +
      `const c = new ChorusClient({ address: '127.0.0.1:1' });\n` +
      `console.log(typeof c.submit, isTerminal('succeeded'), natsNames('x').eventsStream);\nc.close();\n`,
  );
  const out = execFileSync(process.execPath, ['client.mjs'], { cwd: project, encoding: 'utf8' });
  assert.equal(out.trim(), 'function true X_EVENTS');
  // The declaration files: a consumer's TypeScript type-checks against them (the repo's tsc).
  writeFileSync(
    join(project, 'client.ts'),
    `import { ChorusClient, type Job } from 'chorus';\n` +
      `const c: ChorusClient = new ChorusClient({ address: '127.0.0.1:1' });\n` +
      `export async function states(): Promise<string[]> { return (await c.list()).map((j: Job) => j.state); }\n` +
      `// @ts-expect-error: the declarations know submit's parameters\nvoid c.submit(42);\n`,
  );
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(
    process.execPath,
    [
      tsc,
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--types',
      'node',
      'client.ts',
    ],
    { cwd: project, encoding: 'utf8', env: { ...process.env, NODE_PATH: join(h.ROOT, 'node_modules') } },
  );
});

test('a coordinator and a worker from the installed package train a job (runner and merge threads from dist/)', async () => {
  const data = join(dir, 'data');
  execFileSync('mkdir', ['-p', data]);
  await h.writeTinyModel(join(data, 'model'));
  h.writeTaskData(join(data, 'a.jsonl'), 16, 8, 1, 4);
  h.writeTaskData(join(data, 'b.jsonl'), 16, 8, 3, 5);
  const coord = installed([
    'coordinator',
    '--listen',
    '127.0.0.1:0',
    '--nats',
    h.NATS_URL,
    '--prefix',
    prefix,
    '--client-token',
    h.TOKENS.client,
    '--worker-token',
    h.TOKENS.worker,
  ]);
  procs.push(coord);
  const address = await h.waitFor(coord, /ready (\S+)/, 30_000);
  procs.push(
    installed(['worker', '--coordinator', address, '--devices', 'cpu:2', '--token', h.TOKENS.worker, ...h.DATA_ROOT]),
  );
  const c = h.client(address);
  try {
    await h.waitWorkers(c, 1);
    const id = await c.submit(
      h.jobSpec(data, {
        tasks: [
          { name: 'a', data: { train: join(data, 'a.jsonl') } },
          { name: 'b', data: { train: join(data, 'b.jsonl') } },
        ],
        merge: { method: 'linear' },
      }),
    );
    const outputs = () => procs.map((p) => p.output()).join('\n---\n');
    // A worker whose runner threads cannot load dies: the job would wait for workers, so bound the wait.
    const worker = procs[procs.length - 1];
    const job = await Promise.race([
      c.wait(id),
      worker.exited.then((code) => Promise.reject(new Error(`the worker exited (${code}) mid-job`))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 180_000).unref()),
    ]).catch((err) => assert.fail(`${err.message}\n${outputs()}`));
    assert.equal(job.state, 'succeeded', `${job.reason}\n${outputs()}`);
    const files = await c.downloadResult(id, join(dir, 'result'));
    assert.ok(
      files.some((f) => f.endsWith('merged/adapter_model.safetensors')),
      files.join(', '),
    );
  } finally {
    c.close();
  }
  assert.ok(readdirSync(join(project, 'node_modules', 'chorus', 'dist')).includes('cli'));
});
