// The short gRPC fuzz run of `npm test` against a real coordinator process and NATS (grpc.ts says
// what each call must do). The full run is `npm run fuzz -- --grpc`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../cluster/helpers.ts';
import { fuzzGrpc } from './grpc.ts';

let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const prefix = h.uniquePrefix();

before(async () => {
  coord = await h.startCoordinator(prefix);
});

after(async () => {
  await h.stopAll([coord]);
  await h.cleanNats(prefix);
});

test('seeded hostile calls on every client handler: OK or a fault code, never INTERNAL, never a hang', async () => {
  const failures = await fuzzGrpc(coord.address, h.TOKENS.client, 20261202, 120);
  assert.deepEqual(failures, []);
  assert.equal(coord.child.exitCode, null, 'the coordinator is still running');
});
