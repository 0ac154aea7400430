// The README's job spec example is a valid spec, and the demo spec it describes is too; the README's
// sentences about the demo job (three tasks, replicas, gradient sync, steps, rank and projections,
// global batch, linear merge) are read out of the README and checked against demo/job.yaml.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJobSpec, taskOf } from '../../shared/job/parse.ts';

const root = new URL('../..', import.meta.url).pathname;

test('the job spec example in README.md parses', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /## Job spec reference[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has a yaml block under "Job spec reference"');
  const dir = mkdtempSync(join(tmpdir(), 'chorus-readme-'));
  try {
    writeFileSync(join(dir, 'job.yaml'), block[1]);
    const spec = loadJobSpec(join(dir, 'job.yaml'));
    assert.deepEqual(
      spec.tasks.map((t) => t.name),
      ['revup', 'rotup'],
    );
    assert.equal(taskOf(spec, 'revup').training.steps, 200);
    assert.equal(spec.tasks[0].data.train, join(dir, 'data/revup.train.jsonl'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('demo/job.yaml: three tasks, two replicas each, CoTo on, a final merge', () => {
  const spec = loadJobSpec(join(root, 'demo/job.yaml'));
  assert.deepEqual(
    spec.tasks.map((t) => [t.name, t.replicas]),
    [
      ['revup', 2],
      ['rotup', 2],
      ['rotrev', 2],
    ],
  );
  for (const t of spec.tasks) assert.notEqual(taskOf(spec, t.name).coto, null);
  assert.notEqual(spec.merge, null);
  assert.equal(spec.baseModel, join(root, 'demo/base'));
});

test('demo/job-plain-lora.yaml is demo/job.yaml with CoTo off', () => {
  const coto = loadJobSpec(join(root, 'demo/job.yaml'));
  const plain = loadJobSpec(join(root, 'demo/job-plain-lora.yaml'));
  for (const t of plain.tasks) assert.equal(taskOf(plain, t.name).coto, null);
  const strip = (s: typeof coto) => ({
    ...s,
    name: undefined,
    sourcePath: undefined,
    tasks: s.tasks.map((t) => ({ ...t, coto: undefined })),
  });
  assert.deepEqual(strip(plain), strip(coto));
});

test("the README's claims about the demo job are what demo/job.yaml says", () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  const spec = loadJobSpec(join(root, 'demo/job.yaml'));
  const claim =
    /Each task adapter \(rank (\d+) on every projection, (\d+) steps, (\d+) replicas with gradients summed every step, i\.e\. one global batch of (\d+)\)/.exec(
      readme,
    );
  assert.ok(claim, "README states the demo adapters' rank, steps, replicas and global batch");
  const [rank, steps, replicas, globalBatch] = claim.slice(1).map(Number);
  assert.match(
    readme,
    /three tasks on a small base model, two data-parallel replicas each \(6 shards\) whose gradients are summed through the coordinator every step, CoTo on, and a final merge of the three task adapters \(the average of their deltas\)/,
  );
  assert.equal(spec.tasks.length, 3);
  assert.equal(spec.sync.mode, 'gradients');
  for (const t of spec.tasks) {
    const task = taskOf(spec, t.name);
    assert.equal(task.replicas, replicas, t.name);
    assert.equal(task.training.steps, steps, t.name);
    assert.equal(task.training.batchSize * task.replicas * task.training.gradAccum, globalBatch, t.name);
    assert.equal(task.lora.r, rank, t.name);
    // "every projection": all seven of a Llama layer.
    assert.deepEqual(
      [...task.lora.targetModules].sort(),
      ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'],
      t.name,
    );
    assert.notEqual(task.coto, null, t.name);
  }
  // "the average of their deltas": a linear merge with equal weights summing to 1.
  assert.equal(spec.merge?.method, 'linear');
  const w = spec.merge!.weights!;
  assert.equal(w.length, 3);
  assert.ok(w.every((x) => x === w[0]) && Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-3, `weights ${w}`);
  assert.match(readme, new RegExp(`merged \\(${spec.merge!.method}\\)`), 'the table header names the merge method');
});
