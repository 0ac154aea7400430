// NATS names and events (shared/nats/), credentials kept out of messages (coordinator/nats-store.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { natsNames } from '../../shared/nats/subjects.ts';
import { parseEvent, makeEvent } from '../../shared/nats/events.ts';
import { redactUrl } from '../../coordinator/nats-store.ts';

test('NATS names derive from one prefix; bad prefixes and ids are refused', () => {
  const n = natsNames('t1');
  assert.equal(n.eventsStream, 'T1_EVENTS');
  assert.equal(n.jobEvent('j1', 'round.merged'), 't1.job.j1.round.merged');
  assert.equal(n.jobFilter('j1'), 't1.job.j1.>');
  assert.throws(() => natsNames('a.b'), /prefix/);
  assert.throws(() => n.jobEvent('a.b', 'x'), /subject token/);
  const ev = makeEvent('metrics', 'j1', {
    shardId: 's',
    task: 't',
    replica: 0,
    step: 1,
    totalSteps: 2,
    loss: 1,
    lr: 0.1,
    p: 0.5,
    tokens: 3,
    tokensPerSec: 4,
    activeLayers: [0],
  });
  assert.deepEqual(parseEvent(JSON.stringify(ev)), ev);
  assert.throws(() => parseEvent(JSON.stringify({ ...ev, type: 'nope' })), /unknown event type/);
  assert.throws(() => parseEvent(JSON.stringify({ ...ev, data: { ...ev.data, step: 'x' } })));
});

test('NATS URLs lose their credentials before they reach a message', async () => {
  assert.equal(redactUrl('nats://alice:s3cret@nats.example:4222'), 'nats://***@nats.example:4222');
  assert.equal(redactUrl('nats://tok@a:4222,nats://b:4222'), 'nats://***@a:4222,nats://b:4222');
  assert.equal(redactUrl('nats://127.0.0.1:4222'), 'nats://127.0.0.1:4222');
});
