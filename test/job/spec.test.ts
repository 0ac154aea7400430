import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJobSpec, parseJobSpec, taskOf } from '../../shared/job/parse.ts';
import { specToWire } from '../../shared/job/wire.ts';
import { ChorusError } from '../../shared/errors.ts';

const single = `
name: demo
base_model: ./base
seed: 1
lora: { r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj], use_rslora: false }
coto: { enabled: true, p_start: 0.1, p_end: 1.0, ramp_fraction: 0.75 }
training:
  steps: 200
  batch_size: 8
  seq_len: 64
  grad_accum: 1
  lr: 1e-3
  warmup_steps: 10
  schedule: cosine
  min_lr_ratio: 0.0
  weight_decay: 0.0
  betas: [0.9, 0.999]
  eps: 1e-8
  max_grad_norm: 1.0
  eval_every: 50
  eval_batches: 4
  checkpoint_every: 100
  log_every: 10
data: { train: train.jsonl, eval: eval.jsonl }
`;

const cluster = {
  base_model: '/models/base',
  training: { steps: 100, lr: 0.002 },
  lora: { r: 4, target_modules: ['q_proj', 'k_proj'] },
  tasks: [
    { name: 'reverse', data: { train: 'rev/train.jsonl' }, replicas: 2, lora: { r: 16 }, training: { lr: 0.01 } },
    { name: 'sort', data: { train: '/abs/sort.jsonl', eval: 'sort/eval.jsonl' } },
  ],
  sync: { mode: 'weights', every: 10, method: 'mean' },
  merge: { method: 'ties', weights: [1, 0.5], density: 0.5, majority_sign: 'total', rank: 16, seed: 0 },
};

function errorOf(text: string, sourcePath = '/jobs/job.yaml'): string {
  try {
    parseJobSpec(text, { sourcePath });
  } catch (err) {
    assert.ok(err instanceof ChorusError, `expected ChorusError, got ${err}`);
    return err.message;
  }
  assert.fail('expected the spec to be rejected');
}

test('single-task YAML normalises to one task "default" with paths resolved against the spec file', () => {
  const spec = parseJobSpec(single, { sourcePath: '/jobs/x/job.yaml' });
  assert.equal(spec.name, 'demo');
  assert.equal(spec.baseModel, '/jobs/x/base');
  assert.equal(spec.tasks.length, 1);
  const t = taskOf(spec);
  assert.deepEqual(
    { name: t.name, replicas: t.replicas, data: t.data, baseModel: t.baseModel },
    {
      name: 'default',
      replicas: 1,
      data: { train: '/jobs/x/train.jsonl', eval: '/jobs/x/eval.jsonl' },
      baseModel: '/jobs/x/base',
    },
  );
  assert.deepEqual(spec.sync, { mode: 'gradients' });
  assert.equal(spec.merge, null);
  assert.equal(t.training.lr, 1e-3);
  assert.equal(t.training.eps, 1e-8);
  assert.deepEqual(t.training.betas, [0.9, 0.999]);
  assert.equal(t.training.seqLen, 64);
  assert.equal(t.seed, 1);
  assert.deepEqual(t.lora.targetModules, ['q_proj', 'v_proj']);
  assert.equal(t.coto?.rampFraction, 0.75);
});

test('cluster JSON form: task overrides merge over the top level and defaults', () => {
  const spec = parseJobSpec(JSON.stringify(cluster), { sourcePath: '/jobs/job.json' });
  assert.equal(spec.tasks.length, 2);
  const rev = taskOf(spec, 'reverse');
  assert.equal(rev.replicas, 2);
  assert.equal(rev.lora.r, 16);
  assert.deepEqual(rev.lora.targetModules, ['q_proj', 'k_proj']);
  assert.equal(rev.lora.loraAlpha, 16); // default
  assert.equal(rev.training.lr, 0.01);
  assert.equal(rev.training.steps, 100);
  assert.equal(rev.data.train, '/jobs/rev/train.jsonl');
  const sort = taskOf(spec, 'sort');
  assert.equal(sort.lora.r, 4);
  assert.equal(sort.training.lr, 0.002);
  assert.equal(sort.data.train, '/abs/sort.jsonl');
  assert.equal(sort.data.eval, '/jobs/sort/eval.jsonl');
  assert.deepEqual(spec.sync, { mode: 'weights', every: 10, method: 'mean' });
  assert.ok(spec.merge?.method === 'ties' && spec.merge.rank === 16 && spec.merge.majoritySign === 'total');
  assert.throws(() => taskOf(spec, 'nope'), /no task named "nope".*reverse, sort/);
});

test('loadJobSpec reads a file and resolves paths against its directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-spec-'));
  writeFileSync(join(dir, 'job.yml'), single);
  const spec = loadJobSpec(join(dir, 'job.yml'));
  assert.equal(spec.tasks[0].data.train, join(dir, 'train.jsonl'));
  assert.throws(() => loadJobSpec(join(dir, 'missing.yaml')), /cannot read job spec .*missing\.yaml/);
});

test('each kind of invalid field is reported with its path', () => {
  const cases: Array<[string, RegExp]> = [
    [single.replace('lr: 1e-3', 'lr: -1'), /training\.lr: must be > 0/],
    [single.replace('lr: 1e-3', 'lr: fast'), /training\.lr: must be a number/],
    [single.replace('steps: 200', 'steps: 2.5'), /training\.steps: must be an integer/],
    [
      single.replace('schedule: cosine', 'schedule: exp'),
      /training\.schedule: must be one of cosine, linear, constant/,
    ],
    [single.replace('betas: [0.9, 0.999]', 'betas: [0.9]'), /training\.betas: /],
    [single.replace('betas: [0.9, 0.999]', 'betas: [0.9, 1.5]'), /training\.betas\[1\]: must be < 1/],
    [single.replace('[q_proj, v_proj]', '[q_proj, qkv]'), /lora\.target_modules\[1\]: must be one of q_proj/],
    [single.replace('r: 8', 'r: 0'), /lora\.r: must be >= 1/],
    [single.replace('dropout: 0.0', 'dropout: 1'), /lora\.dropout: must be < 1/],
    [single.replace('use_rslora: false', 'use_rslora: yes please'), /lora\.use_rslora: must be true or false/],
    [single.replace('p_start: 0.1', 'p_start: 0'), /coto\.p_start: must be > 0/],
    [
      single.replace('p_start: 0.1', 'p_start: 0.9').replace('p_end: 1.0', 'p_end: 0.5'),
      /coto\.p_start: must be <= coto\.p_end/,
    ],
    [single.replace('warmup_steps: 10', 'warmup_steps: 500'), /training\.warmup_steps: must be <= training\.steps/],
    [single.replace('log_every: 10', 'log_every: 10\n  lr_decay: 3'), /training\.lr_decay: unknown field/],
    [single.replace('base_model: ./base', ''), /base_model: required/],
    [single.replace('steps: 200', ''), /training\.steps: required/],
    [single.replace('data: { train: train.jsonl, eval: eval.jsonl }', ''), /data: required \(or tasks\)/],
    [
      single.replace('data: { train: train.jsonl, eval: eval.jsonl }', 'data: { eval: e.jsonl }'),
      /data\.train: required/,
    ],
    [`${single}sync: { mode: sometimes }`, /sync\.mode: /],
    [`${single}sync: { mode: weights }`, /sync\.every: required/],
    [`${single}merge: { method: average }`, /merge\.method: must be one of linear, task_arithmetic/],
    [`${single}merge: { method: ties, density: 2 }`, /merge\.density: must be <= 1/],
    [`${single}merge: { method: ties, rank: 0 }`, /merge\.rank: /],
    [`${single}merge: { method: ties, weights: [1, 2] }`, /merge\.weights: expected 1 weights \(one per task\), got 2/],
    [`${single}tasks: [{ name: a, data: { train: a.jsonl } }]`, /data: give either data .* or tasks/],
  ];
  for (const [text, re] of cases) {
    const msg = errorOf(text);
    assert.match(msg, re, `for a spec rejected with:\n${msg}`);
    assert.match(msg, /^invalid job spec \/jobs\/job\.yaml:/);
  }
});

test('task-level errors name the task index; several problems are all listed', () => {
  const bad = structuredClone(cluster) as any;
  bad.tasks[1].name = 'reverse';
  bad.tasks[0].training.lr = 0;
  bad.tasks[1].replicas = 0;
  bad.tasks[0].lora.target_modules = ['nope'];
  const msg = errorOf(JSON.stringify(bad), '/jobs/job.json');
  assert.match(msg, /tasks\[0\]\.training\.lr: must be > 0/);
  assert.match(msg, /tasks\[1\]\.replicas: must be >= 1/);
  assert.match(msg, /tasks\[0\]\.lora\.target_modules\[0\]: must be one of/);
  const dup = structuredClone(cluster) as any;
  dup.tasks[1].name = 'reverse';
  assert.match(errorOf(JSON.stringify(dup)), /tasks\[1\]\.name: duplicate task name "reverse"/);
  const warm = structuredClone(cluster) as any;
  warm.tasks[1].training = { warmup_steps: 1000 };
  assert.match(errorOf(JSON.stringify(warm)), /tasks\[1\]\.training\.warmup_steps: must be <= training\.steps \(100\)/);
});

test('YAML syntax errors and duplicate keys give the line', () => {
  assert.match(errorOf('base_model: a\ntraining: [1, 2\n'), /line \d+, column \d+/);
  assert.match(errorOf('base_model: a\nbase_model: b\n'), /line 2, column 1: .*unique/i);
  assert.match(errorOf('- 1\n- 2\n'), /must be a mapping/);
});

test('the wire form parses back to the same spec, every task written out in full', () => {
  for (const [text, source] of [
    [single, '/jobs/x/job.yaml'],
    [JSON.stringify(cluster), '/jobs/job.json'],
  ] as const) {
    const spec = parseJobSpec(text, { sourcePath: source });
    const { sourcePath: _, ...portable } = spec;
    const again = parseJobSpec(specToWire(spec));
    assert.deepEqual(again, portable);
  }
  // Defaults are written out: a coordinator with other defaults would still train the same task.
  const wire = JSON.parse(specToWire(parseJobSpec(JSON.stringify(cluster), { sourcePath: '/jobs/job.json' })));
  assert.equal(wire.tasks[1].lora.alpha, 16);
  assert.equal(wire.tasks[1].training.batch_size, 8);
  assert.deepEqual(wire.tasks[1].coto, {
    enabled: true,
    p_start: 0.1,
    p_end: 1,
    ramp_fraction: 0.75,
    shapley_samples: 8,
  });
  const plain = parseJobSpec(single.replace('enabled: true', 'enabled: false'), { sourcePath: '/jobs/x/job.yaml' });
  assert.equal(plain.tasks[0].coto, null);
  assert.equal(parseJobSpec(specToWire(plain)).tasks[0].coto, null);
});

test('memory options: gradient_checkpointing and base_weights default to auto, map and travel on the wire', () => {
  const auto = taskOf(parseJobSpec(single, { sourcePath: '/jobs/x/job.yaml' }));
  assert.equal(auto.training.gradientCheckpointing, 'auto');
  assert.equal(auto.training.baseWeights, 'auto');
  const set = single.replace(
    'log_every: 10',
    'log_every: 10\n  gradient_checkpointing: true\n  base_weights: streamed',
  );
  const spec = parseJobSpec(set, { sourcePath: '/jobs/x/job.yaml' });
  assert.equal(taskOf(spec).training.gradientCheckpointing, true);
  assert.equal(taskOf(spec).training.baseWeights, 'streamed');
  const wire = JSON.parse(specToWire(spec));
  assert.equal(wire.tasks[0].training.gradient_checkpointing, true);
  assert.equal(wire.tasks[0].training.base_weights, 'streamed');
  const off = cluster.tasks.map((t, i) => (i === 1 ? { ...t, training: { gradient_checkpointing: false } } : t));
  const perTask = parseJobSpec(JSON.stringify({ ...cluster, tasks: off }), { sourcePath: '/jobs/job.json' });
  assert.equal(taskOf(perTask, 'sort').training.gradientCheckpointing, false);
  assert.equal(taskOf(perTask, 'reverse').training.gradientCheckpointing, 'auto');
  assert.match(
    errorOf(single.replace('log_every: 10', 'log_every: 10\n  gradient_checkpointing: sometimes')),
    /training\.gradient_checkpointing: must be true, false or auto/,
  );
  assert.match(
    errorOf(single.replace('log_every: 10', 'log_every: 10\n  base_weights: disk')),
    /training\.base_weights: must be one of resident, streamed, auto/,
  );
});

test('coto.shapley_samples: default 8, 0 allowed, per task, bounded 0..64, on the wire; refused with CoTo off', () => {
  assert.equal(taskOf(parseJobSpec(single, { sourcePath: '/jobs/x/job.yaml' })).coto?.shapleySamples, 8);
  const zero = parseJobSpec(single.replace('ramp_fraction: 0.75', 'ramp_fraction: 0.75, shapley_samples: 0'), {
    sourcePath: '/jobs/x/job.yaml',
  });
  assert.equal(taskOf(zero).coto?.shapleySamples, 0);
  assert.equal(JSON.parse(specToWire(zero)).tasks[0].coto.shapley_samples, 0);
  assert.equal(taskOf(parseJobSpec(specToWire(zero))).coto?.shapleySamples, 0);
  const perTask = cluster.tasks.map((t, i) => (i === 0 ? { ...t, coto: { shapley_samples: 64 } } : t));
  const spec = parseJobSpec(JSON.stringify({ ...cluster, tasks: perTask }), { sourcePath: '/jobs/job.json' });
  assert.equal(taskOf(spec, 'reverse').coto?.shapleySamples, 64);
  assert.equal(taskOf(spec, 'sort').coto?.shapleySamples, 8);
  const withSamples = (v: string) =>
    single.replace('ramp_fraction: 0.75', `ramp_fraction: 0.75, shapley_samples: ${v}`);
  assert.match(errorOf(withSamples('65')), /coto\.shapley_samples: must be <= 64/);
  assert.match(errorOf(withSamples('-1')), /coto\.shapley_samples: must be >= 0/);
  assert.match(errorOf(withSamples('2.5')), /coto\.shapley_samples: must be an integer/);
  assert.match(errorOf(withSamples('"8"')), /coto\.shapley_samples: must be an integer/);
  const overTasks = cluster.tasks.map((t, i) => (i === 0 ? { ...t, coto: { shapley_samples: 100 } } : t));
  assert.match(
    errorOf(JSON.stringify({ ...cluster, tasks: overTasks })),
    /tasks\[0\]\.coto\.shapley_samples: must be <= 64/,
  );
  assert.match(
    errorOf(withSamples('0').replace('enabled: true', 'enabled: false')),
    /coto\.shapley_samples: applies only with CoTo on/,
  );
});
