// `chorus init-model` end to end: runs the real CLI, then loads what it wrote with the HF
// directory reader, parses the config and runs the model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
