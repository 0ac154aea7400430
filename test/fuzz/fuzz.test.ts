// The short fuzz run of `npm test` (the full one is `npm run fuzz`): seeded hostile job specs,
// safetensors files, PEFT configs and adapters, worker adapter objects and regex keys. Each case
// must be accepted correctly or refused with a clear ChorusError, within 2 s and a bounded heap.
// The canaries show that the harness catches each kind of failure it is there to catch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runFuzz } from './harness.ts';
import { TARGETS } from './targets.ts';

test('short seeded fuzz run: every case accepted correctly or refused clearly, none hangs or blows up', async () => {
  const report = await runFuzz({ targets: Object.keys(TARGETS), seed: 20261202, cases: 30 });
  assert.deepEqual(report.failures, [], formatReport(report));
  for (const [target, c] of Object.entries(report.counts)) {
    assert.equal(c.accepted + c.refused, 30, target);
    // Both outcomes occur: the generator reaches the parsers' insides, not only their front doors.
    assert.ok(c.refused > 0 && c.accepted > 0, `${target}: ${JSON.stringify(c)}`);
  }
});

test('the harness reports a hang, a memory blow-up, a slow case and an unclear error (canaries), going on after each', async () => {
  const report = await runFuzz({
    targets: ['canary-hang', 'canary-memory', 'canary-slow', 'canary-unclear'],
    seed: 1,
    cases: 1,
    heapMb: 64,
    caseMs: 100,
    wallMs: 10_000,
  });
  const why = Object.fromEntries(report.failures.map((f) => [f.target, f.why]));
  assert.match(why['canary-hang'], /^hang: no result within 10000 ms/);
  assert.match(why['canary-memory'], /^memory: the thread passed its 64 MB heap/);
  assert.match(why['canary-slow'], /^slow: \d+ ms of CPU/);
  assert.match(why['canary-unclear'], /^unclear error: TypeError: Cannot read properties of null/);
  assert.equal(report.failures.length, 4);
});
