// The demo's NATS detection: an answering server is used as is; otherwise a private nats-server is
// started (and stopped, leaving no process and no temp dir); with neither, one clear message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { ensureNats, findNatsServer, freePort, INSTALL_HINT } from '../../cli/demo/nats.ts';
import { ChorusError } from '../../shared/errors.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('nothing answers and no nats-server: a ChorusError with install instructions', async () => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  await assert.rejects(ensureNats({ url, pathEnv: '/nonexistent', extraDirs: [] }), (err: unknown) => {
    assert.ok(err instanceof ChorusError);
    assert.equal(err.message, INSTALL_HINT.replace('{url}', url));
    assert.match(err.message, /apt-get install nats-server/);
    assert.match(err.message, /brew install nats-server/);
    assert.match(err.message, /docker run/);
    return true;
  });
});

test('nothing answers: a private nats-server with JetStream is started and cleaned up', async () => {
  const binary = findNatsServer();
  assert.ok(binary, 'nats-server must be installed for this test (apt-get install nats-server)');
  const url = `nats://127.0.0.1:${await freePort()}`;
  const nats = await ensureNats({ url });
  assert.equal(nats.owned, true);
  assert.notEqual(nats.url, url);
  const pid = nats.process!.pid!;
  assert.ok(alive(pid));
  const again = await ensureNats({ url: nats.url });
  assert.equal(again.owned, false, 'an answering server is reused');
  const storeDir = nats.process!.spawnargs[nats.process!.spawnargs.indexOf('-sd') + 1];
  assert.ok(existsSync(storeDir));
  await nats.stop();
  assert.ok(!alive(pid), 'nats-server stopped');
  assert.ok(!existsSync(storeDir), 'its store is removed');
});
