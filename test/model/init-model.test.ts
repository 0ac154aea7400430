// `chorus init-model` end to end: runs the real CLI, then loads what it wrote with the HF
// directory reader, parses the config and runs the model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { readHfModelDir } from '../../shared/formats/hf-model.ts';
import { parseSafetensors } from '../../shared/formats/safetensors.ts';
import { parseLlamaConfig } from '../../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { initModel, type InitModelOptions } from '../../cli/commands/init-model.ts';
import { ChorusError } from '../../shared/errors.ts';
import { readHfModelStored } from '../../shared/formats/hf-stored.ts';
import { bf16BitsToNumber, numberToBf16Bits } from '../../shared/formats/dtypes.ts';

const cli = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'chorus-init-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function chorus(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, 'init-model', ...args], { encoding: 'utf8' });
}

test('init-model writes a loadable HF Llama directory with a byte tokenizer', async () => {
  const out = join(tmp, 'base');
  const res = chorus(
    '--arch',
    'llama',
    '--hidden',
    '64',
    '--layers',
    '2',
    '--heads',
    '4',
    '--kv-heads',
    '2',
    '--vocab',
    '258',
    '--seed',
    '5',
    '--out',
    out,
  );
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stderr, /wrote .*base \(llama, [\d,]+ parameters \+ byte tokenizer\)/);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    assert.ok(existsSync(join(out, f)), f);
  const raw = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(raw.architectures, ['LlamaForCausalLM']);
  assert.equal(raw.model_type, 'llama');
  assert.equal(raw.bos_token_id, 256);
  const { config, tensors } = await readHfModelDir(out);
  const cfg = parseLlamaConfig(config, join(out, 'config.json'));
  assert.equal(cfg.numKeyValueHeads, 2);
  assert.equal(cfg.intermediateSize, 176);
  // Exactly the seeded init, bit for bit through the safetensors file.
  const expected = initRandomWeights(cfg, 5);
  assert.deepEqual([...tensors.keys()].sort(), [...expected.keys()].sort());
  for (const [k, t] of expected) assert.deepEqual(tensors.get(k)!.data, t.data, k);
  await initEngine('wasm', { quiet: true });
  const model = LlamaModel.fromTensors(cfg, tensors);
  const logits = tf.tidy(() => model.forward(tf.tensor2d([[256, 72, 105]], [1, 3], 'int32')).dataSync());
  assert.equal(logits.length, 3 * 258);
  assert.ok(logits.every(Number.isFinite));
  model.dispose();
});

test('init-model: --tie omits lm_head; vocab < 256 skips the tokenizer', async () => {
  const out = join(tmp, 'tied');
  const res = chorus('--hidden', '32', '--layers', '1', '--heads', '2', '--vocab', '64', '--tie', '--out', out);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stderr, /no tokenizer/);
  assert.ok(!existsSync(join(out, 'tokenizer.json')));
  const { config, tensors } = await readHfModelDir(out);
  assert.equal(config.tie_word_embeddings, true);
  // The file itself holds no lm_head (read raw, not through the loader that ties it).
  const stored = parseSafetensors(readFileSync(join(out, 'model.safetensors')), 'tied');
  assert.ok(!stored.tensors.has('lm_head.weight'), 'a tied model must not store lm_head.weight');
  assert.ok(stored.tensors.has('model.embed_tokens.weight'));
  assert.equal(tensors.has('lm_head.weight'), false);
});

test('init-model: bad flags and a non-empty --out are clear errors', async () => {
  const opts = (o: Partial<InitModelOptions>): InitModelOptions => ({
    arch: 'llama',
    hidden: '64',
    layers: '1',
    heads: '4',
    vocab: '258',
    seed: '0',
    tokenizer: true,
    out: join(tmp, 'x'),
    ...o,
  });
  const cases: Array<[Partial<InitModelOptions>, RegExp]> = [
    [{ layers: '0' }, /--layers must be a positive integer, got '0'/],
    [{ hidden: '6.5' }, /--hidden must be a positive integer, got '6.5'/],
    [{ kvHeads: '3' }, /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/],
    [{ arch: 'gpt2' }, /--arch 'gpt2' is not supported/],
    [{ seed: 'abc' }, /--seed must be an integer/],
    [{ out: join(tmp, 'base') }, /directory is not empty/],
    [{ dtype: 'int8' }, /--dtype must be F32, F16 or BF16, got "int8"/],
    [{ maxShardSize: '2 bananas' }, /--max-shard-size must be a size such as 8GiB/],
    [{ ropeScaling: 'yarn' }, /--rope-scaling must be llama3/],
  ];
  for (const [o, re] of cases) {
    await assert.rejects(
      initModel(opts(o)),
      (e: unknown) => e instanceof ChorusError && re.test(e.message),
      String(re),
    );
  }
  // Through the CLI: exit status 1 and one clear line.
  const res = chorus('--hidden', '64', '--layers', '-1', '--heads', '4', '--out', join(tmp, 'y'));
  assert.equal(res.status, 1);
  assert.equal(res.stderr.trim(), "chorus: --layers must be a positive integer, got '-1'");
});

test('init-model --dtype bf16 --max-shard-size: sharded BF16 weights, the seeded init rounded; llama3 RoPE scaling', async () => {
  const out = join(tmp, 'bf16');
  const res = chorus(
    ...['--hidden', '64', '--layers', '3', '--heads', '4', '--kv-heads', '2', '--vocab', '300', '--tie'],
    ...['--dtype', 'bf16', '--max-shard-size', '20KB', '--rope-scaling', 'llama3', '--seed', '3', '--out', out],
  );
  assert.equal(res.status, 0, res.stderr);
  const shards = readdirSync(out).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  assert.ok(shards.length >= 3, `shards: ${shards}`);
  // A shard holds at most 20 kB of tensors, unless one tensor alone is larger (the 300×64 BF16 embedding).
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
  for (const f of shards) {
    const count = Object.values(index.weight_map).filter((v) => v === f).length;
    if (count > 1)
      assert.ok(statSync(join(out, f)).size <= 20_000 + 8192, `${f}: ${statSync(join(out, f)).size} bytes`);
  }
  assert.ok(existsSync(join(out, 'model.safetensors.index.json')));
  const raw = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(raw.torch_dtype, 'bfloat16');
  const cfg = parseLlamaConfig(raw, 'config.json');
  assert.deepEqual(cfg.ropeScaling, {
    type: 'llama3',
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  const { tensors } = await readHfModelStored(out);
  const expected = initRandomWeights(cfg, 3);
  assert.deepEqual([...tensors.keys()].sort(), [...expected.keys()].sort());
  for (const [k, t] of expected) {
    const s = tensors.get(k)!;
    assert.equal(s.dtype, 'BF16', k);
    assert.deepEqual(
      s.toFloat32(),
      Float32Array.from(t.data, (v) => bf16BitsToNumber(numberToBf16Bits(v))),
      k,
    );
  }
});
