#!/usr/bin/env node
// `npm install` / `npm run build:native`: builds native/blas, the addon that lets the wasm engine's
// matrix products run on the machine's BLAS (shared/tensor/native-gemm.ts). It needs only a C
// compiler and Node's headers (node-gyp, bundled with npm, with npm's nodedir); BLAS itself is
// opened at run time. The addon is optional: a failed build prints why and exits 0, and the engine
// keeps its own products. `--strict` (CI) makes a failed build an error.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const strict = process.argv.includes('--strict');
const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'native', 'blas');

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  ];
  return candidates.find((c) => c && existsSync(c));
}

function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  // Node installed by a distribution keeps its headers under <prefix>/include/node: building
  // against them needs no download.
  const prefix = join(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function give(reason) {
  const message = `chorus: native GEMM addon not built (${reason}); the wasm engine will compute products itself`;
  console.error(message);
  process.exit(strict ? 1 : 0);
}

if (process.env.CHORUS_NATIVE_GEMM === '0') give('CHORUS_NATIVE_GEMM=0');
const gyp = nodeGyp();
if (!gyp) give('node-gyp not found');
const args = [gyp, 'rebuild', `--directory=${dir}`];
const headers = nodeDir();
if (headers) args.push(`--nodedir=${headers}`);
const run = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (run.status !== 0) {
  const lines = `${run.stdout}\n${run.stderr}`.split('\n').filter((l) => /error|ERR!/i.test(l));
  give(lines.slice(0, 6).join(' | ') || `node-gyp exited ${run.status}`);
}
console.error(`chorus: built ${join('native', 'blas', 'build', 'Release', 'chorus_blas.node')}`);
