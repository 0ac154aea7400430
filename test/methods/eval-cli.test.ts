// `chorus eval --adapter A --adapter B --merge orthogonal_dropout`: the in-memory merge evaluates
// exactly as the directory `chorus merge --method orthogonal_dropout` writes; refusals name the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePeftAdapter } from '../../shared/formats/peft.ts';
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';
import { randomModule } from '../merge/helpers.ts';

const root = new URL('../..', import.meta.url).pathname;
const base = join(root, 'demo/base');
const data = join(root, 'demo/data/revup.eval.jsonl');

function chorus(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin/chorus.mjs'), ...args], { encoding: 'utf8', cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A q/v adapter for demo/base (hidden 96, 2 KV heads of 24) with random, non-trivial factors. */
function adapter(seed: number): LoraAdapter {
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < 3; l++) {
    modules.set(`model.layers.${l}.self_attn.q_proj`, randomModule(96, 96, 2, 0.02, seed * 10 + l));
    modules.set(`model.layers.${l}.self_attn.v_proj`, randomModule(48, 96, 2, 0.02, seed * 10 + 5 + l));
  }
  return {
    config: { r: 2, loraAlpha: 0.04, targetModules: ['q_proj', 'v_proj'], loraDropout: 0, useRslora: false },
    modules,
  };
}

test('chorus eval --merge orthogonal_dropout equals evaluating the chorus merge output', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-evalmerge-'));
  try {
    const [a, b] = [join(dir, 'a'), join(dir, 'b')];
    await writePeftAdapter(a, adapter(1));
    await writePeftAdapter(b, adapter(2));
    const merged = join(dir, 'm');
    const m = chorus('merge', a, b, '--method', 'orthogonal_dropout', '--seed', '3', '--out', merged);
    assert.equal(m.code, 0, m.err);
    const common = ['--model', base, '--data', data, '--backend', 'wasm'];
    const viaDir = chorus('eval', ...common, '--adapter', merged);
    const inMemory = chorus(
      'eval',
      ...common,
      '--adapter',
      a,
      '--adapter',
      b,
      '--merge',
      'orthogonal_dropout',
      '--merge-seed',
      '3',
    );
    const other = chorus(
      'eval',
      ...common,
      '--adapter',
      a,
      '--adapter',
      b,
      '--merge',
      'orthogonal_dropout',
      '--merge-seed',
      '4',
    );
    for (const r of [viaDir, inMemory, other]) assert.equal(r.code, 0, r.err);
    const [x, y, z] = [viaDir, inMemory, other].map((r) => JSON.parse(r.out.trim()));
    assert.equal(y.loss, x.loss);
    assert.equal(y.tokens, x.tokens);
    assert.notEqual(z.loss, x.loss, 'another seed draws other masks');
    const refused = chorus('eval', ...common, '--adapter', a, '--adapter', b);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /2 adapters given: pass --merge METHOD/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
