// `chorus merge` / `chorus extract` end to end: real PEFT and HF directories written here, the real
// command run as a child process, its output read back and checked against float64 references.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPeftAdapter, writePeftAdapter } from '../../shared/formats/peft.ts';
import { writeHfModelDir, type HfTensor } from '../../shared/formats/hf-model.ts';
import {
  deltaOf,
  flat,
  maxAbs,
  maxAbsDiff,
  randomAdapter,
  refLinear,
  refTies,
  refTrim,
  rng,
  type Spec,
} from './helpers.ts';

const root = new URL('../..', import.meta.url).pathname;

function chorus(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin/chorus.mjs'), ...args], { encoding: 'utf8', cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const spec: Spec = {
  shapes: {
    'model.layers.0.self_attn.q_proj': [8, 6],
    'model.layers.0.self_attn.v_proj': [4, 6],
    'model.layers.1.self_attn.q_proj': [8, 6],
  },
  rank: 2,
  alpha: 4,
};

test('chorus merge: ties on three PEFT directories, then an error naming module and shapes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-merge-'));
  try {
    const adapters = [
      randomAdapter(spec, 1),
      randomAdapter({ ...spec, alpha: 8 }, 2),
      randomAdapter({ ...spec, rslora: true }, 3),
    ];
    const dirs = adapters.map((_, i) => join(dir, `in${i}`));
    for (let i = 0; i < 3; i++) await writePeftAdapter(dirs[i], adapters[i]);
    // Reference from what was written (float32 on disk).
    const onDisk = await Promise.all(dirs.map((d) => readPeftAdapter(d)));
    const out = join(dir, 'merged');
    const r = chorus(
      'merge',
      ...dirs,
      '--method',
      'ties',
      '--weights',
      '1,0.5,1',
      '--density',
      '0.5',
      '--majority-sign',
      'total',
      '--rank',
      'full',
      '--out',
      out,
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /merged 3 adapters \(ties, delta space\)/);
    const merged = await readPeftAdapter(out);
    for (const name of Object.keys(spec.shapes)) {
      const deltas = onDisk.map((a) => refTrim(flat(deltaOf(a.modules.get(name)!)), 0.5));
      const want = refTies(deltas, [1, 0.5, 1], 'total');
      const got = flat(deltaOf(merged.modules.get(name)!));
      assert.ok(maxAbsDiff(got, want) < 1e-5 * (1 + maxAbs(want)), name);
    }
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.use_rslora, false);
    assert.equal(cfg.lora_alpha, cfg.r);

    // linear at its default rank is exact too.
    const lin = chorus(
      'merge',
      ...dirs.slice(0, 2),
      '--method',
      'linear',
      '--weights',
      '2,-1',
      '--out',
      join(dir, 'lin'),
    );
    assert.equal(lin.code, 0, lin.err);
    const linAd = await readPeftAdapter(join(dir, 'lin'));
    const name = 'model.layers.1.self_attn.q_proj';
    const want = refLinear(
      onDisk.slice(0, 2).map((a) => flat(deltaOf(a.modules.get(name)!))),
      [2, -1],
    );
    assert.ok(maxAbsDiff(flat(deltaOf(linAd.modules.get(name)!)), want) < 1e-5 * maxAbs(want));

    const odd = randomAdapter({ ...spec, shapes: { ...spec.shapes, 'model.layers.0.self_attn.v_proj': [5, 6] } }, 4);
    await writePeftAdapter(join(dir, 'odd'), odd);
    const bad = chorus('merge', dirs[0], join(dir, 'odd'), '--method', 'svd', '--out', join(dir, 'x'));
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /module model\.layers\.0\.self_attn\.v_proj has shape \[4, 6\] in .*in0 but \[5, 6\] in .*odd/,
    );
    const badW = chorus('merge', dirs[0], dirs[1], '--method', 'linear', '--weights', '1,x', '--out', join(dir, 'x'));
    assert.match(badW.err, /--weights: entry 2 \("x"\) is not a number/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chorus extract: recovers a planted rank-2 delta from two HF model directories', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-extract-'));
  try {
    const g = rng(9);
    const shapes: Record<string, number[]> = {
      'model.embed_tokens.weight': [20, 8],
      'model.layers.0.self_attn.q_proj.weight': [8, 8],
      'model.layers.0.self_attn.v_proj.weight': [4, 8],
      'model.norm.weight': [8],
    };
    const base = new Map<string, HfTensor>();
    for (const [name, shape] of Object.entries(shapes)) {
      base.set(name, {
        shape,
        data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => g.normal() * 0.1),
      });
    }
    // Planted rank-2 delta on q_proj: u1 v1ᵀ + 0.5 u2 v2ᵀ with random (non-orthogonal) vectors.
    const u = [0, 1].map(() => Array.from({ length: 8 }, () => g.normal()));
    const v = [0, 1].map(() => Array.from({ length: 8 }, () => g.normal()));
    const delta = Array.from({ length: 64 }, (_, k) => u[0][k >> 3] * v[0][k & 7] + 0.5 * u[1][k >> 3] * v[1][k & 7]);
    const tuned = new Map(base);
    const q = base.get('model.layers.0.self_attn.q_proj.weight')!;
    tuned.set('model.layers.0.self_attn.q_proj.weight', {
      shape: q.shape,
      data: Float32Array.from(q.data, (x, i) => x + delta[i]),
    });
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8 };
    await writeHfModelDir(join(dir, 'base'), config, base);
    await writeHfModelDir(join(dir, 'tuned'), config, tuned);
    const out = join(dir, 'lora');
    const r = chorus(
      'extract',
      '--base',
      join(dir, 'base'),
      '--tuned',
      join(dir, 'tuned'),
      '--rank',
      '2',
      '--target',
      'q_proj,v_proj',
      '--out',
      out,
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /model\.layers\.0\.self_attn\.q_proj \[8×8\]  rank 2  energy kept 100\.00%/);
    assert.match(r.out, /model\.layers\.0\.self_attn\.v_proj \[4×8\]  unchanged, skipped/);
    const lora = await readPeftAdapter(out);
    const got = flat(deltaOf(lora.modules.get('model.layers.0.self_attn.q_proj')!));
    const exact = Array.from(tuned.get('model.layers.0.self_attn.q_proj.weight')!.data, (x, i) => x - q.data[i]);
    assert.ok(maxAbsDiff(got, exact) < 1e-5);
    const both = chorus(
      'extract',
      '--base',
      join(dir, 'base'),
      '--tuned',
      join(dir, 'tuned'),
      '--rank',
      '2',
      '--energy',
      '0.9',
      '--out',
      out,
    );
    assert.match(both.err, /exactly one of --rank or --energy/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chorus merge --threads 2 writes the adapter of one thread, byte for byte; --precision and --threads are checked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-merge-threads-'));
  try {
    const dirs = [join(dir, 'a'), join(dir, 'b')];
    await writePeftAdapter(dirs[0], randomAdapter(spec, 11));
    await writePeftAdapter(dirs[1], randomAdapter(spec, 12));
    const run = (out: string, ...flags: string[]) => {
      const r = chorus('merge', ...dirs, '--method', 'ties', '--density', '0.5', '--out', join(dir, out), ...flags);
      assert.equal(r.code, 0, r.err);
    };
    run('one', '--threads', '1');
    run('two', '--threads', '2');
    run('f64', '--precision', 'float64');
    const file = (out: string) => readFile(join(dir, out, 'adapter_model.safetensors'));
    assert.deepEqual(await file('two'), await file('one'));
    const [one, f64] = await Promise.all([readPeftAdapter(join(dir, 'one')), readPeftAdapter(join(dir, 'f64'))]);
    for (const name of Object.keys(spec.shapes)) {
      const want = flat(deltaOf(f64.modules.get(name)!));
      assert.ok(maxAbsDiff(flat(deltaOf(one.modules.get(name)!)), want) < 1e-5 * (1 + maxAbs(want)), name);
    }
    const badP = chorus('merge', ...dirs, '--method', 'svd', '--precision', 'float16', '--out', join(dir, 'x'));
    assert.equal(badP.code, 1);
    assert.match(badP.err, /--precision must be float32 or float64, got "float16"/);
    const badT = chorus('merge', ...dirs, '--method', 'svd', '--threads', '0', '--out', join(dir, 'x'));
    assert.equal(badT.code, 1);
    assert.match(badT.err, /--threads must be a positive integer, got '0'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
