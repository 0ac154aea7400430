// Hostile job specs (issue 9, reproducers 1, 2, 3 and 11): every numeric field has a documented
// maximum, total work and name lengths are bounded, the text is size-capped and read in linear
// time, and alias bombs, unresolved aliases and deep nesting are clear errors naming the place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJobSpec } from '../../shared/job/parse.ts';
import * as L from '../../shared/job/limits.ts';
import { readSpecText } from '../../shared/job/spec-text.ts';
import { ChorusError } from '../../shared/errors.ts';

const base = (extra = '') => `
base_model: /m
training: { steps: 100 }
data: { train: /d.jsonl }
${extra}`;

function errorOf(text: string): string {
  try {
    parseJobSpec(text, { sourcePath: '/jobs/job.yaml' });
  } catch (err) {
    assert.ok(err instanceof ChorusError, `expected ChorusError, got ${String(err).slice(0, 200)}`);
    return err.message;
  }
  assert.fail('expected the spec to be rejected');
}

test('reproducer 1: replicas 100000000 is refused naming the field, not planned', () => {
  const msg = errorOf(
    JSON.stringify({
      base_model: '/m',
      training: { steps: 1 },
      tasks: [{ name: 'a', data: { train: '/d' }, replicas: 1e8 }],
    }),
  );
  assert.match(msg, new RegExp(`tasks\\[0\\]\\.replicas: must be <= ${L.MAX_REPLICAS}`));
});

test('each numeric field has an upper bound named in the error', () => {
  const cases: Array<[string, RegExp]> = [
    [base().replace('steps: 100', 'steps: 9007199254740991'), /training\.steps: must be <= 1000000/],
    [base().replace('steps: 100', 'steps: 100, seq_len: 1000000000'), /training\.seq_len: must be <= 131072/],
    [base().replace('steps: 100', 'steps: 100, batch_size: 100000'), /training\.batch_size: must be <= 4096/],
    [base().replace('steps: 100', 'steps: 100, grad_accum: 5000'), /training\.grad_accum: must be <= 1024/],
    [base().replace('steps: 100', 'steps: 100, eval_batches: 1e9'), /training\.eval_batches: must be <= /],
    [base().replace('steps: 100', 'steps: 100, lr: 1e9'), /training\.lr: must be <= 10/],
    [base().replace('steps: 100', 'steps: 100, keep_checkpoints: 1e6'), /training\.keep_checkpoints: must be <= 1000/],
    [base('lora: { r: 1000000 }'), /lora\.r: must be <= 4096/],
    [base('lora: { alpha: 1e300 }'), /lora\.alpha: must be <= 1000000/],
    [base('sync: { mode: weights, every: 1e12 }'), /sync\.every: must be <= 1000000/],
    [base('merge: { method: ties, rank: 1e9 }'), /merge\.rank: /],
    [base('seed: 1e300'), /seed: must be/],
  ];
  for (const [text, re] of cases) assert.match(errorOf(text), re);
});

test('total work (tasks × replicas × steps) and total shards are bounded', () => {
  const tasks = (n: number, replicas: number, steps: number) =>
    JSON.stringify({
      base_model: '/m',
      training: { steps },
      tasks: Array.from({ length: n }, (_, i) => ({ name: `t${i}`, data: { train: '/d' }, replicas })),
    });
  assert.match(errorOf(tasks(20, 64, 10)), /replicas: 1280 shards in all exceeds 256/);
  assert.match(errorOf(tasks(4, 32, 1_000_000)), /replicas × steps summed over tasks is 128000000/);
  assert.match(errorOf(tasks(65, 1, 10)), /tasks: must list at most 64 tasks/);
  // At the bounds, accepted.
  assert.equal(parseJobSpec(tasks(4, 64, 39_000)).tasks.length, 4);
});

test('reproducer 3: names and paths have length limits (a 600 KB name is refused, not acknowledged)', () => {
  assert.match(errorOf(base(`name: ${'x'.repeat(129)}`)), /^ {2}- name: must be at most 128 characters/m);
  assert.match(
    errorOf(
      JSON.stringify({
        base_model: '/m',
        training: { steps: 1 },
        tasks: [{ name: 'a'.repeat(65), data: { train: '/d' } }],
      }),
    ),
    /tasks\[0\]\.name: must be at most 64 characters/,
  );
  assert.match(
    errorOf(base().replace('/d.jsonl', `/${'d'.repeat(5000)}`)),
    /data\.train: must be at most 4096 characters/,
  );
  // 600 KB: over the size cap before anything is parsed.
  const big = errorOf(base(`name: ${'x'.repeat(600_000)}`));
  assert.match(big, /\(spec\): \d+ bytes exceeds the 262144-byte limit/);
  assert.ok(big.length < 500, 'the error does not echo the name');
});

test('reproducer 2: duplicate keys are found by a linear pass and named with their line', () => {
  // 20k distinct keys then one repeat: the quadratic check took seconds here, a linear one does not.
  const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}: 1`).join('\n');
  const r = readSpecText(`${keys}\nk3: 2\n`);
  assert.equal(r.ok, false);
  assert.match((r as { problems: string[] }).problems[0], /^line 20001, column 1: map keys must be unique \("k3"/);
  // Nested mappings keep their own key sets.
  assert.deepEqual(readSpecText('a: {x: 1}\nb: {x: 2}\n'), { ok: true, value: { a: { x: 1 }, b: { x: 2 } } });
  assert.match(
    errorOf('base_model: a\ntraining: {steps: 1, steps: 2}\n'),
    /line 2, column 22: map keys must be unique/,
  );
  // Many unknown keys: the error lists 20 and counts the rest.
  const many = errorOf(base(Array.from({ length: 500 }, (_, i) => `u${i}: 1`).join('\n')));
  assert.match(many, /u19: unknown field\n {2}… and 480 more problem\(s\)$/);
});

test('reproducer 11: alias bombs and unresolved aliases are INVALID_ARGUMENT-style errors, not ReferenceErrors', () => {
  let bomb = 'a: &a [x, x, x, x, x, x, x, x, x]\n';
  for (let i = 0; i < 9; i++) {
    const p = String.fromCharCode(97 + i);
    const c = String.fromCharCode(98 + i);
    bomb += `${c}: &${c} [${Array(9).fill(`*${p}`).join(', ')}]\n`;
  }
  assert.match(errorOf(bomb), /aliases expand past 100 nodes/);
  assert.match(errorOf(`${base()}\nname: *nope\n`), /line 6, column 7: unresolved alias \*nope/);
  // Aliases that stay small still work.
  const ok = parseJobSpec(`base_model: /m\ntraining: &t { steps: 5 }\ndata: { train: /d }\ncoto: { enabled: false }\n`);
  assert.equal(ok.tasks[0].training.steps, 5);
});

test('deep nesting (flow or block) is an error naming the depth, not a stack overflow', () => {
  for (const text of [
    `a: ${'['.repeat(10_000)}${']'.repeat(10_000)}`,
    `a: ${'['.repeat(40)}${']'.repeat(40)}`,
    Array.from({ length: 500 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n'),
    `${'- '.repeat(50)}x`,
    // Found by the fuzz suite: 50k unclosed brackets after a JSON document took 11 s of CPU in the
    // parser's error path (each error quoted the 100 KB line).
    `{"base_model": "/m"}\nk: ${'['.repeat(50_000)}`,
  ]) {
    assert.match(errorOf(text), new RegExp(`nested more than ${L.MAX_SPEC_DEPTH} levels deep`));
  }
  // Aliases that stack depth beyond what the text shows.
  let chain = `a0: &a0 ${'['.repeat(20)}${']'.repeat(20)}\n`;
  for (let i = 1; i < 4; i++) chain += `a${i}: &a${i} [[[[[[[[[[[[[[[[[[[[*a${i - 1}]]]]]]]]]]]]]]]]]]]]\n`;
  assert.match(errorOf(chain), /nested more than 32 levels deep/);
});
