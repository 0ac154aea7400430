// Device discovery flags (worker/devices.ts) and what runner processes inherit (worker/runner/host.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDevices } from '../../worker/devices.ts';
import { runnerEnv } from '../../worker/runner/host.ts';

test('--devices parsing', () => {
  assert.deepEqual(
    parseDevices('cpu:2').map((d) => d.id),
    ['cpu:0', 'cpu:1'],
  );
  assert.deepEqual(
    parseDevices('gpu:0,3').map((d) => [d.id, d.kind, d.index]),
    [
      ['gpu:0', 'gpu', 0],
      ['gpu:3', 'gpu', 3],
    ],
  );
  assert.throws(() => parseDevices('tpu:1'), /--devices/);
});

test('GPU runner processes do not inherit the worker token or NATS secrets', async () => {
  const env = runnerEnv({
    PATH: '/bin',
    CHORUS_TOKEN: 't',
    CHORUS_WORKER_TOKEN: 'w',
    CHORUS_CLIENT_TOKEN: 'c',
    NATS_TOKEN: 'n',
    NATS_PASSWORD: 'p',
    CHORUS_BACKEND: 'wasm',
  });
  assert.deepEqual(env, { PATH: '/bin', CHORUS_BACKEND: 'wasm' });
});
