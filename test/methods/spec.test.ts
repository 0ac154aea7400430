// The methods' job-spec fields: accepted shapes, the cross-field rules (each error names the field
// as written, the task's override or the top level) and the wire round trip to workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJobSpec } from '../../shared/job/parse.ts';
import { specToWire } from '../../shared/job/wire.ts';
import { ChorusError } from '../../shared/errors.ts';

const spec = (extra: Record<string, unknown>, task: Record<string, unknown> = {}) =>
  JSON.stringify({
    base_model: '/m',
    training: { steps: 10 },
    tasks: [{ name: 'a', data: { train: '/a.jsonl' }, ...task }],
    ...extra,
  });

function errorOf(text: string): string {
  try {
    parseJobSpec(text);
  } catch (err) {
    assert.ok(err instanceof ChorusError, `expected ChorusError, got ${err}`);
    return err.message;
  }
  assert.fail('expected the spec to be rejected');
}

test('dropout_samples and rdrop resolve into the task and survive the wire form', () => {
  const s = parseJobSpec(
    spec(
      { lora: { dropout: 0.1, dropout_samples: 4 } },
      { training: { rdrop: { alpha: 0.5 } }, lora: { dropout_samples: 1 } },
    ),
  );
  const t = s.tasks[0];
  assert.equal(t.lora.dropoutSamples, 1);
  assert.deepEqual(t.training.rdrop, { alpha: 0.5 });
  assert.deepEqual(parseJobSpec(specToWire(s)).tasks, s.tasks);
});

test('shape errors name the field', () => {
  const msg = errorOf(spec({ lora: { dropout_samples: 0 }, training: { steps: 10, rdrop: { alpha: -1, beta: 2 } } }));
  assert.match(msg, /lora\.dropout_samples: must be >= 1/);
  assert.match(msg, /training\.rdrop\.alpha: must be >= 0/);
  assert.match(msg, /training\.rdrop\.beta: unknown field/);
});

test('R-Drop and multi-sample dropout need dropout, and do not combine', () => {
  assert.match(
    errorOf(spec({ lora: { dropout_samples: 3 } })),
    /lora\.dropout_samples: 3 samples need lora\.dropout > 0/,
  );
  assert.match(
    errorOf(spec({}, { training: { rdrop: { alpha: 1 } } })),
    /tasks\[0\]\.training\.rdrop: needs lora\.dropout > 0/,
  );
  assert.match(
    errorOf(spec({ lora: { dropout: 0.1, dropout_samples: 2 }, training: { steps: 10, rdrop: { alpha: 1 } } })),
    /training\.rdrop: cannot be combined with lora\.dropout_samples > 1/,
  );
});

test('every method combines with CoTo, the training methods with each other (R-Drop aside), and the merge', () => {
  const s = parseJobSpec(
    spec(
      {
        lora: { r: 8, dropout: 0.1, dropout_samples: 2, sparsity: { ratio: 0.25 }, split: { groups: 2, active: 1 } },
        coto: { enabled: true },
        merge: { method: 'orthogonal_dropout', seed: 3 },
      },
      { training: { rdrop: { alpha: 1 } }, lora: { dropout_samples: 1 } },
    ),
  );
  assert.ok(s.tasks[0].coto);
  assert.deepEqual(s.merge, { method: 'orthogonal_dropout', seed: 3 });
  assert.match(
    errorOf(spec({ merge: { method: 'orthogonal_dropout', space: 'factors' } })),
    /merge\.space: "factors" is not available for method orthogonal_dropout/,
  );
});

test('sparsity and split: defaults, rules, and the wire form', () => {
  const s = parseJobSpec(spec({ lora: { r: 8, sparsity: { ratio: 0.5 }, split: { groups: 4, active: 1 } } }));
  assert.deepEqual(s.tasks[0].lora.sparsity, { ratio: 0.5, criterion: 'snip' });
  assert.deepEqual(s.tasks[0].lora.split, { groups: 4, active: 1 });
  assert.deepEqual(parseJobSpec(specToWire(s)).tasks, s.tasks);
  assert.match(
    errorOf(spec({ lora: { sparsity: { ratio: 1, criterion: 'loud' } } })),
    /lora\.sparsity\.ratio: must be < 1/,
  );
  assert.match(
    errorOf(spec({ lora: { sparsity: { ratio: 0.1, criterion: 'loud' } } })),
    /lora\.sparsity\.criterion: must be one of snip, magnitude, random/,
  );
  assert.match(
    errorOf(spec({ lora: { r: 6 } }, { lora: { split: { groups: 4, active: 1 } } })),
    /tasks\[0\]\.lora\.split\.groups: lora\.r \(6\) must be a multiple of the number of groups \(4\)/,
  );
  assert.match(
    errorOf(spec({ lora: { split: { groups: 2, active: 2 } } })),
    /lora\.split\.active: must be < split\.groups \(2\)/,
  );
  for (const key of ['sparsity', 'split']) {
    const lora = key === 'sparsity' ? { sparsity: { ratio: 0.5 } } : { split: { groups: 2, active: 1 } };
    assert.match(
      errorOf(spec({ lora, sync: { mode: 'weights', every: 5 } })),
      new RegExp(`lora\\.${key}: needs sync mode gradients`),
    );
  }
});
