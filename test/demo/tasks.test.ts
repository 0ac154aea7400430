// The demo's task generators: rules, determinism, train/eval disjointness, and that the committed
// data files are exactly what demo/make-data.ts produces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ALL_OPS,
  BASE_OPS,
  TASK_OPS,
  MAX_LEN,
  MIN_LEN,
  findOp,
  generate,
  inputOf,
  writeTaskData,
} from '../../demo/tasks.ts';
import { DATA_DEFAULTS } from '../../demo/make-data.ts';
import { completionBatch } from '../../demo/score.ts';
import { ChorusError } from '../../shared/errors.ts';

test('task rules', () => {
  assert.equal(findOp('copy').apply('cab'), 'cab');
  assert.equal(findOp('up').apply('cab'), 'CAB');
  assert.equal(findOp('rev').apply('abcd'), 'dcba');
  assert.equal(findOp('rotl').apply('abcd'), 'bcda');
  // The tasks compose two base rules each.
  assert.equal(findOp('revup').apply('abcd'), 'DCBA');
  assert.equal(findOp('rotup').apply('abcd'), 'BCDA');
  assert.equal(findOp('rotrev').apply('abcd'), 'adcb');
  assert.throws(() => findOp('nope'), ChorusError);
  // Held-out tasks are not base ops, and every op has a distinct name.
  assert.equal(new Set(ALL_OPS.map((o) => o.name)).size, BASE_OPS.length + TASK_OPS.length);
});

test('generation is deterministic, in range, and eval never overlaps train', () => {
  for (const op of TASK_OPS) {
    const a = generate(op, 200, 5);
    assert.deepEqual(a, generate(op, 200, 5));
    assert.notDeepEqual(a, generate(op, 200, 6));
    for (const e of a) {
      const input = inputOf(e);
      assert.match(input, /^[a-z]+$/);
      assert.ok(input.length >= MIN_LEN && input.length <= MAX_LEN);
      assert.equal(e.prompt, `${op.name}:${input}=`);
      assert.equal(e.completion, op.apply(input) + '\n');
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'chorus-tasks-'));
  try {
    const files = writeTaskData(
      dir,
      TASK_OPS.map((o) => o.name),
      DATA_DEFAULTS,
    );
    for (const f of files) {
      const train = readFileSync(f.train, 'utf8');
      const evalText = readFileSync(f.eval, 'utf8');
      assert.equal(
        train,
        readFileSync(new URL(`../../demo/data/${f.task}.train.jsonl`, import.meta.url), 'utf8'),
        `${f.task} train file is regenerated identically`,
      );
      assert.equal(evalText, readFileSync(new URL(`../../demo/data/${f.task}.eval.jsonl`, import.meta.url), 'utf8'));
      const trainInputs = new Set(
        train
          .trim()
          .split('\n')
          .map((l) => inputOf(JSON.parse(l))),
      );
      const evalInputs = evalText
        .trim()
        .split('\n')
        .map((l) => inputOf(JSON.parse(l)));
      assert.equal(trainInputs.size, DATA_DEFAULTS.train);
      assert.equal(evalInputs.length, DATA_DEFAULTS.eval);
      assert.ok(
        evalInputs.every((i) => !trainInputs.has(i)),
        `${f.task}: eval inputs are unseen`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('training rows weight exactly the completion bytes', () => {
  const { ids, weights } = completionBatch([
    { prompt: 'rev:ab=', completion: 'ba\n' },
    { prompt: 'rev:abc=', completion: 'cba\n' },
  ]);
  assert.equal(ids[0].length, 12);
  assert.deepEqual(ids[0].slice(0, 10), [...Buffer.from('rev:ab=ba\n')]);
  assert.deepEqual(ids[0].slice(10), [0, 0]);
  // Position t predicts ids[t+1]: the targets are 'b', 'a', '\n' (positions 6, 7, 8).
  assert.deepEqual(weights[0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
  assert.equal(
    weights[1].reduce((a, b) => a + b, 0),
    4,
  );
});
