// Greedy decoding with the KV cache: its logits equal the float64 reference forward of the whole
// sequence, its tokens equal full-recompute decoding token for token (with an adapter, a pruned
// adapter, grouped-query attention and prompts of different lengths), and stop rules end it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../../shared/tensor/engine.ts';
import { LlamaModel } from '../../shared/model/llama.ts';
import { KvCache } from '../../shared/model/kv-cache.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { cutAtStop, greedyDecode } from '../../shared/eval/generate.ts';
import { makeFixture, randomAdapter, randomIds, refLoraOf } from '../model/fixture.ts';
import { refForward } from '../model/reference.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';

await initEngine('wasm', { quiet: true });
// GQA (4 query heads over 2 KV heads), 3 layers, a vocabulary small enough for varied argmaxes.
const fx = makeFixture(
  {
    hiddenSize: 32,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    vocabSize: 40,
    intermediateSize: 48,
  },
  11,
);
const model = LlamaModel.fromTensors(fx.config, fx.tensors);
const adapter = randomAdapter(fx.config, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'], 4, 8, 5);
const lora = LoraRuntime.fromAdapter(model, adapter);

test('cached forward, token by token, gives the float64 reference logits of the whole sequence', () => {
  const ids = randomIds(40, 1, 9, 3)[0];
  const active = [true, false, true];
  const ref = refForward(fx.ref, fx.refWeights, ids, refLoraOf(adapter), active);
  const cache = new KvCache(3);
  try {
    // A prompt of 4, then one token at a time: every position's logits against the reference.
    const chunks = [ids.slice(0, 4), ...ids.slice(4).map((t) => [t])];
    let pos = 0;
    for (const chunk of chunks) {
      const got = tf.tidy(
        () =>
          model
            .forward(tf.tensor2d([chunk], [1, chunk.length], 'int32'), { lora, activeLayers: active, kvCache: cache })
            .arraySync() as number[][][],
      )[0];
      for (let t = 0; t < chunk.length; t++, pos++) {
        const err = Math.max(...got[t].map((v, i) => Math.abs(v - ref[pos][i])));
        assert.ok(err < 2e-4, `position ${pos}: max error ${err}`);
      }
      assert.equal(cache.length, pos);
    }
  } finally {
    cache.dispose();
  }
});

test('KV-cached greedy decoding equals full-recompute decoding token for token', () => {
  // Lengths 3, 5 and 5 (two decode together), with and without the adapter, and with layer 1 pruned.
  const prompts = [...randomIds(40, 1, 3, 21), ...randomIds(40, 2, 5, 22)];
  const cases = [
    { name: 'base', o: {} },
    { name: 'adapter', o: { lora } },
    { name: 'pruned', o: { lora, activeLayers: [true, false, true] } },
  ];
  for (const c of cases) {
    const cached = greedyDecode(model, prompts, { maxNewTokens: 14, ...c.o });
    const full = greedyDecode(model, prompts, { maxNewTokens: 14, useCache: false, ...c.o });
    assert.deepEqual(
      cached.map((d) => d.ids),
      full.map((d) => d.ids),
      c.name,
    );
    for (const d of cached) assert.equal(d.ids.length, 14);
    // The continuations are not all one token repeated: the comparison has something to compare.
    assert.ok(new Set(cached.flatMap((d) => d.ids)).size > 3, `${c.name}: ${JSON.stringify(cached.map((d) => d.ids))}`);
  }
  const adapted = greedyDecode(model, prompts, { maxNewTokens: 14, lora }).map((d) => d.ids);
  const plain = greedyDecode(model, prompts, { maxNewTokens: 14 }).map((d) => d.ids);
  assert.notDeepEqual(adapted, plain, 'the adapter changes the continuations');
});

test('a pruned adapter (layers off) decodes as the adapter without those layers’ modules', () => {
  const without: LoraAdapter = {
    config: adapter.config,
    modules: new Map([...adapter.modules].filter(([path]) => !path.startsWith('model.layers.1.'))),
  };
  const pruned = LoraRuntime.fromAdapter(model, without);
  try {
    const prompts = randomIds(40, 3, 4, 31);
    assert.deepEqual(
      greedyDecode(model, prompts, { maxNewTokens: 10, lora, activeLayers: [true, false, true] }).map((d) => d.ids),
      greedyDecode(model, prompts, { maxNewTokens: 10, lora: pruned }).map((d) => d.ids),
    );
  } finally {
    pruned.dispose();
  }
});

test('stop ids and stop strings end a row; the others go on', () => {
  const prompts = randomIds(40, 2, 4, 41);
  const free = greedyDecode(model, prompts, { maxNewTokens: 12 });
  // Stop id: the first token row 0 generates at position 3 ends row 0 there (or earlier if repeated).
  const stopId = free[0].ids[3];
  const firstAt = free[0].ids.indexOf(stopId);
  const withEos = greedyDecode(model, prompts, { maxNewTokens: 12, stopIds: [stopId] });
  assert.deepEqual(withEos[0].ids, free[0].ids.slice(0, firstAt));
  assert.equal(withEos[0].stoppedBy, 'eos');
  const other = free[1].ids.indexOf(stopId);
  assert.deepEqual(withEos[1].ids, other < 0 ? free[1].ids : free[1].ids.slice(0, other), 'row 1 goes on');
  // Stop string over a letter decoding: ids → letters; the text is cut before the stop string.
  const decode = (ids: number[]) => ids.map((i) => String.fromCharCode(97 + (i % 26))).join('');
  const text = decode(free[1].ids);
  const stop = text.slice(5, 7);
  const got = greedyDecode(model, prompts, { maxNewTokens: 12, decode, stop: [stop] });
  assert.equal(got[1].text, cutAtStop(text, [stop]));
  assert.equal(got[1].stoppedBy, 'stop');
  assert.ok(got[1].ids.length <= 7, 'decoding stopped once the stop string appeared');
  assert.equal(got[1].text, text.slice(0, text.indexOf(stop)));
});

test('cutAtStop cuts before the earliest stop string', () => {
  assert.equal(cutAtStop('abc\ndef', ['\n']), 'abc');
  assert.equal(cutAtStop('abc;de\nf', ['\n', ';']), 'abc');
  assert.equal(cutAtStop('abc', ['\n']), 'abc');
  assert.equal(cutAtStop('abc', []), 'abc');
  assert.equal(cutAtStop('\nabc', ['\n']), '');
});

test('bad input: errors name the problem', () => {
  assert.throws(() => greedyDecode(model, [[1, 2]], { maxNewTokens: 0 }), /maxNewTokens must be a positive integer/);
  assert.throws(() => greedyDecode(model, [[]], { maxNewTokens: 3 }), /prompt 0 is empty/);
  assert.throws(() => greedyDecode(model, [[1, 99]], { maxNewTokens: 3 }), /prompt 0 has token id 99 outside/);
  assert.throws(() => greedyDecode(model, [[1]], { maxNewTokens: 3, stop: ['x'] }), /stop strings need a decoder/);
  const cache = new KvCache(3);
  assert.throws(
    () => tf.tidy(() => model.forward(tf.tensor2d([[1]], [1, 1], 'int32'), { kvCache: cache, training: true })),
    /KV cache is for inference/,
  );
  cache.dispose();
});
