// The README's job spec example is a valid spec, and the demo spec it describes is too.
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
