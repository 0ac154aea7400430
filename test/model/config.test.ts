// config.json parsing: HF defaults, validation errors that name the field, JSON round trip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  defaultIntermediate,
  llamaConfigToJson,
  makeLlamaConfig,
  parseLlamaConfig,
  ropeInverseFrequencies,
} from '../../shared/model/config.ts';
import { ChorusError } from '../../shared/errors.ts';

const base = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 176,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 256,
  rms_norm_eps: 1e-5,
};

test('defaults follow HF LlamaConfig: kv heads = heads, head_dim = hidden/heads, theta 1e4, untied', () => {
  const c = parseLlamaConfig(base);
  assert.equal(c.numKeyValueHeads, 4);
  assert.equal(c.headDim, 16);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.rmsNormEps, 1e-5);
  assert.equal(c.initializerRange, 0.02);
});

test('round trip through llamaConfigToJson keeps every field and unknown keys', () => {
  const c = parseLlamaConfig({
    ...base,
    num_key_value_heads: 2,
    head_dim: 32,
    rope_theta: 500000,
    tie_word_embeddings: true,
    bos_token_id: 1,
  });
  const again = parseLlamaConfig(llamaConfigToJson(c));
  assert.deepEqual(again, { ...c, extra: { ...c.extra, torch_dtype: 'float32' } });
  assert.equal(llamaConfigToJson(c).bos_token_id, 1);
});

test('validation errors name the file and the field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...base, hidden_size: undefined }, /base\/config\.json: hidden_size is required/],
    [{ ...base, num_hidden_layers: 0 }, /num_hidden_layers must be a positive integer, got 0/],
    [{ ...base, vocab_size: '256' }, /vocab_size must be a positive integer, got "256"/],
    [{ ...base, num_key_value_heads: 3 }, /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/],
    [{ ...base, hidden_size: 66 }, /hidden_size \(66\) must be divisible by num_attention_heads \(4\)/],
    [{ ...base, rope_scaling: { type: 'dynamic', factor: 2 } }, /rope_scaling: type "dynamic" is not supported/],
    [
      { ...base, rope_scaling: { rope_type: 'llama3', factor: 8 } },
      /rope_scaling\.low_freq_factor must be a positive number, got undefined/,
    ],
    [{ ...base, model_type: 'gpt2' }, /model_type "gpt2" is not supported/],
    [{ ...base, rms_norm_eps: -1 }, /rms_norm_eps must be a positive number/],
    [{ ...base, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    [{ ...base, attention_bias: true }, /attention_bias=true is not supported/],
    [{ ...base, tie_word_embeddings: 'yes' }, /tie_word_embeddings must be true or false/],
  ];
  for (const [json, re] of cases) {
    assert.throws(
      () => parseLlamaConfig(json, 'base/config.json'),
      (e: unknown) => e instanceof ChorusError && re.test(e.message),
      String(re),
    );
  }
  assert.throws(() => parseLlamaConfig([], 'x.json'), /x\.json: expected a JSON object/);
  assert.doesNotThrow(() => parseLlamaConfig({ ...base, rope_scaling: null }));
});

test('rope inverse frequencies: default, linear and the three llama3 bands, by hand', () => {
  const c = parseLlamaConfig({ ...base, head_dim: 8, hidden_size: 32, rope_theta: 10000 });
  assert.deepEqual(
    [...ropeInverseFrequencies(c)].map((f) => +f.toPrecision(12)),
    [1, 0.1, 0.01, 0.001],
  );
  const lin = parseLlamaConfig({ ...base, head_dim: 8, hidden_size: 32, rope_scaling: { type: 'linear', factor: 4 } });
  assert.deepEqual(
    [...ropeInverseFrequencies(lin)].map((f) => +f.toPrecision(12)),
    [0.25, 0.025, 0.0025, 0.00025],
  );
  const l3 = parseLlamaConfig({
    ...base,
    head_dim: 8,
    hidden_size: 32,
    rope_scaling: {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    },
  });
  const f = ropeInverseFrequencies(l3);
  assert.equal(f[0], 1); // wavelength 2π < 16: high frequency, kept
  // wavelength 20π ≈ 62.8 lies between 16 and 64: smooth = (64/(20π) − 1)/3
  const smooth = (64 / (20 * Math.PI) - 1) / 3;
  assert.ok(Math.abs(f[1] - (((1 - smooth) * 0.1) / 8 + smooth * 0.1)) < 1e-15);
  assert.ok(Math.abs(f[2] - 0.01 / 8) < 1e-15); // wavelength 628 > 64: divided by the factor
  assert.ok(Math.abs(f[3] - 0.001 / 8) < 1e-15);
  // The JSON round trip keeps the scaling.
  assert.deepEqual(parseLlamaConfig(llamaConfigToJson(l3)).ropeScaling, l3.ropeScaling);
});

test('makeLlamaConfig fills the Llama MLP width rule', () => {
  assert.equal(defaultIntermediate(64), 176); // 2/3·256 = 170.67 → 171 → multiple of 8 → 176
  assert.equal(defaultIntermediate(4096), 11008); // Llama-7B
  assert.equal(
    makeLlamaConfig({ hiddenSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, vocabSize: 10 }).intermediateSize,
    176,
  );
});
