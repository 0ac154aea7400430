import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkLlamaTensors,
  llamaTensorNames,
  readHfModelDir,
  resolveLmHead,
  writeHfModelDir,
  type HfTensors,
} from '../../shared/formats/hf-model.ts';
import { serializeSafetensors } from '../../shared/formats/safetensors-write.ts';
import { ChorusError } from '../../shared/errors.ts';

const H = 8;
const V = 16;
const I = 12;

function tinyLlama(layers: number, tied: boolean): { config: Record<string, unknown>; tensors: HfTensors } {
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: layers,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    vocab_size: V,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: tied,
  };
  const shapes: Record<string, number[]> = {
    'model.embed_tokens.weight': [V, H],
    'model.norm.weight': [H],
    'lm_head.weight': [V, H],
  };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    shapes[`${p}.self_attn.q_proj.weight`] = [H, H];
    shapes[`${p}.self_attn.k_proj.weight`] = [H / 2, H];
    shapes[`${p}.self_attn.v_proj.weight`] = [H / 2, H];
    shapes[`${p}.self_attn.o_proj.weight`] = [H, H];
    shapes[`${p}.mlp.gate_proj.weight`] = [I, H];
    shapes[`${p}.mlp.up_proj.weight`] = [I, H];
    shapes[`${p}.mlp.down_proj.weight`] = [H, I];
    shapes[`${p}.input_layernorm.weight`] = [H];
    shapes[`${p}.post_attention_layernorm.weight`] = [H];
  }
  const tensors: HfTensors = new Map();
  let k = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    if (tied && name === 'lm_head.weight') continue;
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.sin(++k * 0.37) * 0.5;
    tensors.set(name, { shape, data });
  }
  return { config, tensors };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hf-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('single-file round trip keeps HF names and values; tensor list is complete', () =>
  withDir(async (dir) => {
    const { config, tensors } = tinyLlama(2, false);
    assert.deepEqual(new Set(tensors.keys()), new Set(llamaTensorNames(2, false)));
    await writeHfModelDir(dir, config, tensors);
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.safetensors']);
    const back = await readHfModelDir(dir);
    assert.deepEqual(back.config, config);
    assert.equal(back.tensors.size, tensors.size);
    for (const [name, t] of tensors) {
      assert.deepEqual(back.tensors.get(name)!.shape, t.shape, name);
      assert.deepEqual(back.tensors.get(name)!.data, t.data, name);
    }
    checkLlamaTensors(back.config, back.tensors, dir);
    assert.equal(resolveLmHead(back.config, back.tensors).data, back.tensors.get('lm_head.weight')!.data);
  }));

test('sharded write produces an index; reading it back gives the same tensors', () =>
  withDir(async (dir) => {
    const { config, tensors } = tinyLlama(3, false);
    await writeHfModelDir(dir, config, tensors, { shardBytes: 1024 });
    const files = (await readdir(dir)).sort();
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    assert.ok(shards.length > 2, `expected several shards, got ${files.join(', ')}`);
    assert.ok(!files.includes('model.safetensors'));
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.deepEqual(new Set(Object.keys(index.weight_map)), new Set(tensors.keys()));
    let total = 0;
    for (const t of tensors.values()) total += t.data.length * 4;
    assert.equal(index.metadata.total_size, total);
    const back = await readHfModelDir(dir);
    for (const [name, t] of tensors) assert.deepEqual(back.tensors.get(name)!.data, t.data, name);
    // Rewriting as a single file removes the stale shards and index.
    await writeHfModelDir(dir, config, tensors);
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.safetensors']);
  }));

test('BF16 and F16 weights are upcast to Float32 (values equal their rounded halves)', () =>
  withDir(async (dir) => {
    const { config, tensors } = tinyLlama(1, true);
    for (const dtype of ['BF16', 'F16'] as const) {
      await writeHfModelDir(dir, config, tensors, { dtype });
      const back = await readHfModelDir(dir);
      const x = tensors.get('model.norm.weight')!.data;
      const y = back.tensors.get('model.norm.weight')!.data;
      // Independent bound: BF16 keeps 8 significant bits, F16 11: relative error ≤ 2^-8 / 2^-11.
      const tol = dtype === 'BF16' ? 2 ** -8 : 2 ** -11;
      for (let i = 0; i < x.length; i++)
        assert.ok(Math.abs(y[i] - x[i]) <= tol * Math.abs(x[i]), `${dtype} ${x[i]} → ${y[i]}`);
    }
  }));

test('tied embeddings: lm_head is not stored and resolves to the embedding', () =>
  withDir(async (dir) => {
    const { config, tensors } = tinyLlama(1, true);
    tensors.set('lm_head.weight', tensors.get('model.embed_tokens.weight')!);
    await writeHfModelDir(dir, config, tensors);
    const back = await readHfModelDir(dir);
    assert.ok(!back.tensors.has('lm_head.weight'));
    checkLlamaTensors(back.config, back.tensors, dir);
    assert.equal(resolveLmHead(back.config, back.tensors), back.tensors.get('model.embed_tokens.weight'));
    const untied = { ...back.config, tie_word_embeddings: false };
    assert.throws(
      () => resolveLmHead(untied, back.tensors, dir),
      /missing tensor "lm_head.weight" \(tie_word_embeddings is false\)/,
    );
  }));

test('errors name missing tensors, shards and unsupported formats', () =>
  withDir(async (dir) => {
    const { config, tensors } = tinyLlama(2, false);
    tensors.delete('model.layers.1.mlp.up_proj.weight');
    assert.throws(
      () => checkLlamaTensors(config, tensors, 'm'),
      (e: Error) =>
        e instanceof ChorusError && /m: missing 1 tensor\(s\): "model.layers.1.mlp.up_proj.weight"/.test(e.message),
    );

    await assert.rejects(readHfModelDir(dir), /config.json: model config not found/);
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    await assert.rejects(readHfModelDir(dir), /no model.safetensors or model.safetensors.index.json found/);
    await writeFile(join(dir, 'pytorch_model.bin'), 'x');
    await assert.rejects(readHfModelDir(dir), /found pytorch_model.bin, but only safetensors weights are supported/);
    await rm(join(dir, 'pytorch_model.bin'));

    const shard = serializeSafetensors([{ name: 'model.norm.weight', dtype: 'F32', shape: [2], data: [1, 2] }]);
    await writeFile(join(dir, 'model-00001-of-00002.safetensors'), shard);
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        weight_map: {
          'model.norm.weight': 'model-00001-of-00002.safetensors',
          'lm_head.weight': 'model-00002-of-00002.safetensors',
        },
      }),
    );
    await assert.rejects(
      readHfModelDir(dir),
      /shard .*model-00002-of-00002.safetensors \(holding "lm_head.weight"\) does not exist/,
    );
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        weight_map: {
          'model.norm.weight': 'model-00001-of-00002.safetensors',
          'lm_head.weight': 'model-00001-of-00002.safetensors',
        },
      }),
    );
    await assert.rejects(readHfModelDir(dir), /model-00001-of-00002.safetensors: missing tensor "lm_head.weight"/);
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: '../x.safetensors' } }),
    );
    await assert.rejects(readHfModelDir(dir), /"weight_map"."a" must be a file name/);
  }));
