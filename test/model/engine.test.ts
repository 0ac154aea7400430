// Engine selection: explicit choice, CHORUS_BACKEND, default order, clear errors. Each case runs
// in a fresh process because a tfjs engine picks its backend once per process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('./engine-child.ts', import.meta.url));
const hideNative = fileURLToPath(new URL('./hide-native.mjs', import.meta.url));

/** Runs the child; `hidden` makes the native packages unresolvable there (installed or not). */
function run(arg: string, env: Record<string, string | undefined> = {}, hidden = false) {
  const fullEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete fullEnv[k];
  const flags = hidden ? ['--import', hideNative] : [];
  const res = spawnSync(process.execPath, [...flags, '--import', 'tsx', child, arg], {
    encoding: 'utf8',
    env: fullEnv,
  });
  assert.equal(res.status, 0, res.stderr);
  return {
    out: JSON.parse(res.stdout) as { backend?: string; active?: string; sum?: number; error?: string; name?: string },
    stderr: res.stderr,
  };
}

/** Whether a native package loads here: decided in a child process that only imports it. */
function nativeLoads(): boolean {
  return ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].some(
    (pkg) =>
      spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(pkg)})`], {
        encoding: 'utf8',
      }).status === 0,
  );
}

test('explicit wasm and cpu load, compute, and are announced once on stderr', () => {
  for (const b of ['wasm', 'cpu']) {
    const { out, stderr } = run(b, { CHORUS_BACKEND: undefined, CHORUS_QUIET_BACKEND: undefined });
    assert.deepEqual(out, { backend: b, active: b, sum: 6 });
    // wasm names the BLAS computing its products when native GEMM is on (test/tensor/native-gemm.test.ts).
    assert.match(
      stderr.trim(),
      b === 'wasm' ? /^chorus: backend wasm( \(products on [^)]+\))?$/ : /^chorus: backend cpu$/,
    );
    assert.equal(stderr.trim().split('\n').length, 1);
  }
});

test('CHORUS_BACKEND chooses when no argument is given; the argument wins over it', () => {
  assert.equal(run('', { CHORUS_BACKEND: 'cpu' }).out.backend, 'cpu');
  assert.equal(run('wasm', { CHORUS_BACKEND: 'cpu' }).out.backend, 'wasm');
  assert.equal(run('', { CHORUS_BACKEND: 'cpu', CHORUS_QUIET_BACKEND: '1' }).stderr, '');
});

test('default order: tensorflow when its package loads, else wasm (native packages hidden: wasm)', () => {
  assert.equal(run('', { CHORUS_BACKEND: undefined }).out.backend, nativeLoads() ? 'tensorflow' : 'wasm');
  assert.equal(run('', { CHORUS_BACKEND: undefined }, true).out.backend, 'wasm');
});

test('unknown or unavailable backends are ChorusErrors that say why', () => {
  const bad = run('tpu', { CHORUS_BACKEND: undefined }).out;
  assert.equal(bad.name, 'ChorusError');
  assert.match(bad.error!, /--backend: unknown backend 'tpu' \(expected one of tensorflow, wasm, cpu\)/);
  assert.match(run('', { CHORUS_BACKEND: 'gpu' }).out.error!, /CHORUS_BACKEND: unknown backend 'gpu'/);
  // With the native packages hidden, asking for tensorflow names both packages and why they failed.
  const tfErr = run('tensorflow', { CHORUS_BACKEND: undefined }, true).out;
  assert.equal(tfErr.name, 'ChorusError');
  assert.match(
    tfErr.error!,
    /backend 'tensorflow' is not available: @tensorflow\/tfjs-node-gpu: .*hidden by test.*; @tensorflow\/tfjs-node: .*hidden by test/,
  );
});
