// `chorus merge` on hostile adapters (issue 9, reproducers 13 and 14): an adapter with a NaN factor,
// or with lora_alpha -16, used to merge into NaNs / a sign-flipped delta and exit 0. The command now
// exits 1 naming the tensor or field and writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePeftAdapter } from '../../shared/formats/peft.ts';
import { randomAdapter, type Spec } from './helpers.ts';

const root = new URL('../..', import.meta.url).pathname;
const spec: Spec = { shapes: { 'model.layers.0.self_attn.q_proj': [8, 6] }, rank: 2, alpha: 4 };

function merge(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin/chorus.mjs'), 'merge', ...args], {
    encoding: 'utf8',
    cwd: root,
  });
  return { code: r.status, err: r.stderr };
}

test('chorus merge refuses a NaN adapter and a negative lora_alpha, naming them, and writes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-hostile-merge-'));
  try {
    const good = join(dir, 'good');
    await writePeftAdapter(good, randomAdapter(spec, 1));
    const nan = randomAdapter(spec, 2);
    nan.modules.get('model.layers.0.self_attn.q_proj')!.b[3] = NaN;
    await writePeftAdapter(join(dir, 'nan'), nan);
    const r = merge(good, join(dir, 'nan'), '--method', 'linear', '--out', join(dir, 'out1'));
    assert.equal(r.code, 1, r.err);
    assert.match(
      r.err,
      /tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.weight" holds a non-finite value \(NaN at element 3\)/,
    );
    assert.equal(existsSync(join(dir, 'out1')), false);

    const neg = join(dir, 'neg');
    await writePeftAdapter(neg, randomAdapter(spec, 3));
    const cfg = JSON.parse(readFileSync(join(neg, 'adapter_config.json'), 'utf8'));
    writeFileSync(join(neg, 'adapter_config.json'), JSON.stringify({ ...cfg, lora_alpha: -16 }));
    const r2 = merge(good, neg, '--method', 'linear', '--out', join(dir, 'out2'));
    assert.equal(r2.code, 1, r2.err);
    assert.match(r2.err, /adapter_config\.json: "lora_alpha" must be a finite number > 0, got -16/);
    assert.equal(existsSync(join(dir, 'out2')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
