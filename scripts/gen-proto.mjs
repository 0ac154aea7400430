#!/usr/bin/env node
// Generates shared/gen/ from proto/ with the protoc binary shipped in the `protoc` npm package and
// ts-proto's plugin. `npm run gen:proto`; `--out DIR` writes elsewhere (the test compares the two).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createRequire } from 'node:module';

const root = new URL('..', import.meta.url).pathname;
const outArg = process.argv.indexOf('--out');
const out = outArg >= 0 ? process.argv[outArg + 1] : join(root, 'shared/gen');
const protoDir = join(root, 'proto');

const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (name.endsWith('.proto')) files.push(relative(protoDir, full));
  }
})(protoDir);

const require = createRequire(import.meta.url);
const protocJs = require.resolve('protoc/protoc.cjs');
const plugin = join(root, 'node_modules/.bin/protoc-gen-ts_proto');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const opts = [
  'outputServices=grpc-js',
  'env=node',
  'esModuleInterop=true',
  'importSuffix=.js',
  'forceLong=number',
  'useOptionals=none',
  'oneof=unions-value',
].join(',');
const r = spawnSync(
  process.execPath,
  [
    protocJs,
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `--ts_proto_out=${out}`,
    `--ts_proto_opt=${opts}`,
    `-I${protoDir}`,
    ...files,
  ],
  { stdio: 'inherit' },
);
if (r.status !== 0) process.exit(r.status ?? 1);
console.log(`generated ${files.length} proto file(s) into ${relative(process.cwd(), out) || '.'}`);
