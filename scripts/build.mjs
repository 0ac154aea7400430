#!/usr/bin/env node
// `npm run build`: tsc (tsconfig.build.json) compiles the shipped code to dist/ with declaration
// files; the .mjs entry points of worker threads and runner processes are copied beside their
// compiled modules (tsc does not copy them), where they load the .js instead of the .ts.
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const run = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
let copied = 0;
for (const top of ['shared', 'coordinator', 'worker', 'cli']) {
  (function walk(dir) {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.mjs')) {
        const to = join(dist, relative(root, full));
        mkdirSync(dirname(to), { recursive: true });
        copyFileSync(full, to);
        copied++;
      }
    }
  })(join(root, top));
}
console.error(`build: dist/ compiled, ${copied} .mjs entry point(s) copied`);
