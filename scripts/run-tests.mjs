#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's test runner through tsx (Node 20's --test takes no globs).
// Extra arguments filter test files by substring: `node scripts/run-tests.mjs safetensors merge`.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (name.endsWith('.test.ts')) files.push(relative(root, full));
  }
})(join(root, 'test'));
const selected = filters.length ? files.filter((f) => filters.some((s) => f.includes(s))) : files;
if (selected.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const concurrency = process.env.CHORUS_TEST_CONCURRENCY ?? '2';
// Two test files at once, each with coordinators, workers and runners, on a machine of a few cores:
// one BLAS thread per process (native GEMM), as cluster runners use by default; otherwise the
// processes' BLAS threads spin against each other and heartbeats go late, and a test's in-process
// reference would sum in another order than its workers (test/tensor/native-gemm.test.ts).
const env = { ...process.env, CHORUS_BLAS_THREADS: process.env.CHORUS_BLAS_THREADS ?? '1' };
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...selected],
  { cwd: root, stdio: 'inherit', env },
);
process.exit(result.status ?? 1);
