// config.json parsing: HF defaults, validation errors that name the field, JSON round trip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultIntermediate, llamaConfigToJson, makeLlamaConfig, parseLlamaConfig } from '../../shared/model/config.ts';
import { ChorusError } from '../../shared/errors.ts';

const base = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 176,
  num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 256, rms_norm_eps: 1e-5,
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
  const c = parseLlamaConfig({ ...base, num_key_value_heads: 2, head_dim: 32, rope_theta: 500000, tie_word_embeddings: true, bos_token_id: 1 });
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
    [{ ...base, rope_scaling: { type: 'llama3', factor: 8 } }, /rope_scaling .* is not supported/],
    [{ ...base, model_type: 'gpt2' }, /model_type "gpt2" is not supported/],
    [{ ...base, rms_norm_eps: -1 }, /rms_norm_eps must be a positive number/],
    [{ ...base, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    [{ ...base, attention_bias: true }, /attention_bias=true is not supported/],
    [{ ...base, tie_word_embeddings: 'yes' }, /tie_word_embeddings must be true or false/],
  ];
  for (const [json, re] of cases) {
    assert.throws(() => parseLlamaConfig(json, 'base/config.json'), (e: unknown) => e instanceof ChorusError && re.test(e.message), String(re));
  }
  assert.throws(() => parseLlamaConfig([], 'x.json'), /x\.json: expected a JSON object/);
  assert.doesNotThrow(() => parseLlamaConfig({ ...base, rope_scaling: null }));
});

test('makeLlamaConfig fills the Llama MLP width rule', () => {
  assert.equal(defaultIntermediate(64), 176); // 2/3·256 = 170.67 → 171 → multiple of 8 → 176
  assert.equal(defaultIntermediate(4096), 11008); // Llama-7B
  assert.equal(makeLlamaConfig({ hiddenSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, vocabSize: 10 }).intermediateSize, 176);
});
