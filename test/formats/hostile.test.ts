// Hostile adapter files (issue 9, reproducers 4, 10, 13, 14): regex keys that would backtrack
// forever, nesting that overflowed the stack in error messages, NaN/Inf factors, and what the format
// rules out (integer dtypes, a byte-order mark, lone surrogates, alpha <= 0). Each is a ChorusError
// that names the key or tensor; merge and eval read adapters through the same functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adapterFromObjectBytes, adapterToObjectBytes, peftAdapterFromBytes } from '../../shared/formats/peft.ts';
import { findPatternKey, fullMatch, isTargetModule } from '../../shared/formats/peft-patterns.ts';
import { parseSafetensors } from '../../shared/formats/safetensors.ts';
import { serializeSafetensors, type TensorInput } from '../../shared/formats/safetensors-write.ts';
import { ChorusError } from '../../shared/errors.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';

const Q = 'model.layers.0.self_attn.q_proj';
const KEY = `base_model.model.${Q}`;
const good = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'] };

function weights(a: ArrayLike<number> = [1, 2, 3, 4, 5, 6], dtype: TensorInput['dtype'] = 'F32'): Uint8Array {
  return serializeSafetensors(
    new Map<string, TensorInput>([
      [`${KEY}.lora_A.weight`, { dtype, shape: [2, 3], data: Array.from(a) }],
      [`${KEY}.lora_B.weight`, { dtype, shape: [3, 2], data: [1, 0, 0, 1, 1, 1] }],
    ]),
  );
}

function refuses(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ChorusError, `expected a ChorusError, got ${String(e).slice(0, 200)}`);
    assert.match(e.message, re);
    return true;
  });
}

const read = (cfg: object, bytes = weights()) => peftAdapterFromBytes(bytes, JSON.stringify(cfg), 'ad');

test('reproducer 4: catastrophic-backtracking patterns run in linear time (RE2) with PEFT semantics', () => {
  // With JS RegExp each of these takes exponential time in the module name's length.
  const long = `${'a.'.repeat(5_000)}q_proj`;
  assert.equal(findPatternKey(['(.*)*x', '(a|a)*b'], long, 'rank_pattern'), undefined);
  assert.equal(fullMatch('(.*)*x', long, 'target_modules'), false);
  assert.equal(read({ ...good, rank_pattern: { '(.*)*x': 4 } }).modules.get(Q)!.rank, 2);
  refuses(() => read({ ...good, target_modules: '(.*)*x' }), /is not matched by target_modules "\(\.\*\)\*x"/);
  assert.equal(read({ ...good, exclude_modules: '(.*)*x', alpha_pattern: { '(a|aa)*c': 2 } }).modules.size, 1);
  // PEFT semantics kept: suffix keys, first match in file order, full-match regex targets, (?P<…>).
  assert.equal(findPatternKey(['v_proj', 'self_attn.q_proj', 'q_proj'], Q, 'f'), 'self_attn.q_proj');
  assert.equal(findPatternKey(['elf_attn.q_proj'], Q, 'f'), undefined);
  assert.ok(isTargetModule({ targetModules: '.*\\.(?P<m>q|v)_proj' }, Q, 's'));
  assert.ok(!isTargetModule({ targetModules: 'q_proj' }, Q, 's'));
  assert.ok(!isTargetModule({ targetModules: ['q_proj'], excludeModules: '.*layers\\.0\\..*' }, Q, 's'));
  // What RE2 cannot run, and overlong patterns, are refused by name.
  refuses(
    () => read({ ...good, rank_pattern: { '(a)\\1': 4 } }),
    /"rank_pattern" key "\(a\)\\\\1": invalid or unsupported/,
  );
  refuses(() => read({ ...good, exclude_modules: '(?=q)' }), /"exclude_modules": invalid or unsupported/);
  refuses(
    () => read({ ...good, alpha_pattern: { ['x'.repeat(2000)]: 4 } }),
    /2000 characters exceeds the 1024-character limit/,
  );
  // Worker-made adapter objects get the same treatment.
  const adapter = peftAdapterFromBytes(weights(), JSON.stringify(good), 'ad');
  adapter.config.rankPattern = { '(a)\\1': 2 };
  refuses(
    () => adapterFromObjectBytes(adapterToObjectBytes(adapter), 'obj'),
    /"rankPattern" key .*invalid or unsupported/,
  );
});

test('reproducer 10: 10k levels of nesting in a PEFT config or safetensors header is an error, not a RangeError', () => {
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  refuses(
    () => peftAdapterFromBytes(weights(), `{"peft_type":"LORA","r":${deep(10_000)}}`, 'ad'),
    /nested more than 16 levels/,
  );
  // Shallower than the cap but a wrong type: the message describes the value without recursing.
  refuses(() => read({ ...good, r: JSON.parse(deep(12)) }), /"r" must be a positive integer \(got \[\[\[\[…\]\]\]\]\)/);
  const json = new TextEncoder().encode(`{"a":{"dtype":"F32","shape":${deep(10_000)},"data_offsets":[0,0]}}`);
  const file = new Uint8Array(8 + json.byteLength);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  file.set(json, 8);
  refuses(() => parseSafetensors(file, 'x.safetensors'), /x\.safetensors: header: nested more than 8 levels deep/);
});

test('reproducer 13: NaN or Inf in an adapter is refused with the tensor name (PEFT files and cluster objects)', () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      refuses(
        () => read(good, weights([1, 2, bad, 4, 5, 6], dtype)),
        new RegExp(
          `tensor "${KEY.replace(/\./g, '\\.')}\\.lora_A\\.weight" holds a non-finite value \\(${bad} at element 2\\)`,
        ),
      );
    }
  }
  const adapter: LoraAdapter = read(good);
  adapter.modules.get(Q)!.b[5] = NaN;
  refuses(
    () => adapterFromObjectBytes(adapterToObjectBytes(adapter), 'obj'),
    /lora_B\.weight" holds a non-finite value/,
  );
});

test('reproducer 14: dtypes, byte-order marks, lone surrogates and alpha <= 0 are refused as the format rules', () => {
  for (const dtype of ['I64', 'I32', 'U8', 'BOOL', 'F64'] as const) {
    refuses(
      () => read(good, weights([1, 0, 1, 0, 1, 0], dtype)),
      new RegExp(`has dtype ${dtype}; adapters hold F32, F16 or BF16`),
    );
  }
  // A byte-order mark before the header JSON (the length counts it).
  const plain = weights();
  const len = Number(new DataView(plain.buffer).getBigUint64(0, true));
  const bom = new Uint8Array(plain.byteLength + 3);
  new DataView(bom.buffer).setBigUint64(0, BigInt(len + 3), true);
  bom.set([0xef, 0xbb, 0xbf], 8);
  bom.set(plain.subarray(8), 11);
  refuses(() => parseSafetensors(bom, 'b.safetensors'), /header starts with a byte-order mark/);
  refuses(() => peftAdapterFromBytes(plain, `\ufeff${JSON.stringify(good)}`, 'ad'), /byte-order mark/);
  // A lone surrogate, spelled as a JSON escape (valid UTF-8 bytes, invalid name).
  const header = `{"a\\ud800":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`;
  const json = new TextEncoder().encode(header);
  const file = new Uint8Array(8 + json.byteLength);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  file.set(json, 8);
  refuses(() => parseSafetensors(file, 's.safetensors'), /tensor name "a\\ud800" holds a lone surrogate/);
  // A surrogate pair is fine.
  const pair = new TextEncoder().encode(`{"a\\ud83d\\ude00":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`);
  const ok = new Uint8Array(8 + pair.byteLength);
  new DataView(ok.buffer).setBigUint64(0, BigInt(pair.byteLength), true);
  ok.set(pair, 8);
  assert.deepEqual([...parseSafetensors(ok, 'ok').tensors.keys()], ['a\u{1f600}']);
  // Alpha: one check for every reader.
  refuses(() => read({ ...good, lora_alpha: -16 }), /"lora_alpha" must be a finite number > 0, got -16/);
  refuses(
    () => read({ ...good, alpha_pattern: { q_proj: 0 } }),
    /"alpha_pattern" "q_proj" must be a finite number > 0, got 0/,
  );
  refuses(
    () => read({ ...good, rank_pattern: { q_proj: 0 } }),
    /"rank_pattern" must be an object of positive integers/,
  );
});

test('reproducer 13: NaN or Inf in a base model weight is refused with the tensor name', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { readHfModelDir, writeHfModelDir } = await import('../../shared/formats/hf-model.ts');
  const dir = await mkdtemp(join(tmpdir(), 'chorus-nan-model-'));
  try {
    const config = { model_type: 'llama', num_hidden_layers: 0 };
    const w = new Float32Array([1, 2, NaN, 4]);
    await writeHfModelDir(dir, config, new Map([['model.norm.weight', { shape: [4], data: w }]]));
    await assert.rejects(readHfModelDir(dir), (e: unknown) => {
      assert.ok(e instanceof ChorusError, String(e));
      assert.match(
        e.message,
        /model\.safetensors: tensor "model\.norm\.weight" holds a non-finite value \(NaN at element 2\)/,
      );
      return true;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('reproducer 13: NaN/Inf in a model kept in its stored dtype (F32, F16, BF16) is refused by name, without widening', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { writeHfModelDir } = await import('../../shared/formats/hf-model.ts');
  const { readHfModelStored } = await import('../../shared/formats/hf-stored.ts');
  const dir = await mkdtemp(join(tmpdir(), 'chorus-nan-stored-'));
  try {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const config = { model_type: 'llama', num_hidden_layers: 0 };
        const w = new Float32Array([1, 2, 3, bad, 5, 6]);
        await writeHfModelDir(dir, config, new Map([['model.norm.weight', { shape: [6], data: w }]]), { dtype });
        await assert.rejects(readHfModelStored(dir), (e: unknown) => {
          assert.ok(e instanceof ChorusError, String(e));
          assert.match(
            e.message,
            /model\.safetensors: tensor "model\.norm\.weight" holds a non-finite value \(at element 3\)/,
          );
          return true;
        });
      }
      // Finite values, the largest of each dtype included, load.
      const big = dtype === 'F16' ? 65504 : 3e38;
      await writeHfModelDir(
        dir,
        { model_type: 'llama', num_hidden_layers: 0 },
        new Map([['model.norm.weight', { shape: [2], data: new Float32Array([big, -big]) }]]),
        { dtype },
      );
      assert.equal((await readHfModelStored(dir)).tensors.size, 1);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
