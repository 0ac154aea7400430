// Every memory option trains the same adapter as the plain path (whole-model tape, dense attention,
// the whole batch's head at once, resident weights): per-layer recomputation, the chunked head,
// blocked attention and streamed BF16 weights, alone and together, with and without CoTo, with GQA and
// with tied embeddings. 10 AdamW steps at lr 1e-2 with LoRA dropout on (so the recomputation must
// reproduce the forward's masks); the bound is the issue's: relative L2 difference ≤ 1e-5.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { makeLlamaConfig } from '../../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { StoredTensor } from '../../shared/tensor/stored.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import type { EngineOptions } from '../../shared/train/settings.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { randomExamples, task } from './helpers.ts';

await initEngine(process.env.CHORUS_TEST_BACKEND ?? 'wasm', { quiet: true });

const SEQ = 9;

function storedModel(tied: boolean) {
  const config = makeLlamaConfig({
    hiddenSize: 32,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    vocabSize: 64,
    intermediateSize: 48,
    tieWordEmbeddings: tied,
  });
  // Stored in BF16, as real checkpoints are; the resident model widens the same bytes.
  const stored = new Map(
    [...initRandomWeights(config, 5)].map(([k, t]) => [k, StoredTensor.fromFloat32('BF16', t.shape, t.data, k)]),
  );
  return { config, stored };
}

function train(
  model: LlamaModel,
  coto: boolean,
  engine: Partial<EngineOptions>,
): { adapter: LoraAdapter; p: number[] } {
  const spec = task({
    coto: coto ? { pStart: 0.4, pEnd: 1 } : null,
    training: { lr: 1e-2, seqLen: SEQ, batchSize: 4, gradAccum: 2, steps: 10 },
    lora: { targetModules: ['q_proj', 'v_proj', 'down_proj'], loraDropout: 0.1 },
  });
  const t = AdapterTrainer.create({ model, task: spec, examples: randomExamples(48, SEQ, 64), engine });
  const active: number[] = [];
  for (let i = 0; i < 10; i++) active.push(t.trainStep().activeLayers.filter(Boolean).length);
  const adapter = t.getAdapter();
  t.dispose();
  return { adapter, p: active };
}

function relativeDifference(a: LoraAdapter, b: LoraAdapter): number {
  let num = 0;
  let den = 0;
  for (const [path, m] of b.modules) {
    const o = a.modules.get(path)!;
    for (const k of ['a', 'b'] as const) {
      for (let i = 0; i < m[k].length; i++) {
        num += (o[k][i] - m[k][i]) ** 2;
        den += m[k][i] ** 2;
      }
    }
  }
  return Math.sqrt(num / den);
}

const VARIANTS: Array<[string, Partial<EngineOptions>, boolean]> = [
  ['recomputation', { gradientCheckpointing: true }, false],
  ['chunked head (5 tokens) + blocked attention (4)', { headChunkTokens: 5, attentionBlock: 4 }, false],
  ['recomputation + chunks + blocks', { gradientCheckpointing: true, headChunkTokens: 7, attentionBlock: 2 }, false],
  ['streamed BF16 (head in slabs of 20 rows) + chunks + blocks', { headChunkTokens: 6, attentionBlock: 3 }, true],
];

for (const tied of [false, true]) {
  for (const coto of [false, true]) {
    test(`memory options give the plain path's adapter (GQA, ${tied ? 'tied' : 'untied'}, CoTo ${coto ? 'on' : 'off'})`, () => {
      const { config, stored } = storedModel(tied);
      const resident = LlamaModel.fromTensors(config, stored, 'fixture');
      const streamed = LlamaModel.fromTensors(config, stored, 'fixture', { baseWeights: 'streamed', headSlabRows: 20 });
      const plain = train(resident, coto, {});
      const moved = relativeDifference(plain.adapter, train(resident, coto, { headChunkTokens: 1 << 20 }).adapter);
      assert.equal(moved, 0, 'the plain path is deterministic');
      if (coto)
        assert.ok(
          plain.p.some((n) => n > 0 && n < 3),
          `CoTo left some layers out: ${plain.p}`,
        );
      for (const [name, engine, stream] of VARIANTS) {
        const got = train(stream ? streamed : resident, coto, engine);
        assert.deepEqual(got.p, plain.p);
        const d = relativeDifference(got.adapter, plain.adapter);
        assert.ok(d <= 1e-5, `${name}: relative difference ${d.toExponential(2)} > 1e-5`);
      }
      resident.dispose();
      streamed.dispose();
    });
  }
}

/** The wasm module's heap (it only ever grows), or null on another backend. */
function wasmHeapBytes(): number | null {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm;
  return wasm ? wasm.HEAPU8.length : null;
}

test('recomputation and streaming stay flat: the same tensors and wasm heap after step 3 and step 12', () => {
  const { config, stored } = storedModel(true);
  const model = LlamaModel.fromTensors(config, stored, 'fixture', { baseWeights: 'streamed', headSlabRows: 20 });
  const spec = task({ coto: {}, training: { seqLen: SEQ, steps: 20 } });
  const t = AdapterTrainer.create({
    model,
    task: spec,
    examples: randomExamples(16, SEQ, 64),
    engine: { attentionBlock: 4 },
  });
  assert.equal(t.engine.gradientCheckpointing, true, 'streamed weights imply recomputation');
  for (let i = 0; i < 3; i++) t.trainStep();
  t.evaluate({ examples: randomExamples(4, SEQ, 64) });
  const before = tf.memory().numTensors;
  const heap = wasmHeapBytes();
  for (let i = 0; i < 9; i++) t.trainStep();
  t.evaluate({ examples: randomExamples(4, SEQ, 64) });
  assert.equal(tf.memory().numTensors, before);
  // Widened layers (and XNNPACK's packed copies of them) are freed each time: the heap does not grow.
  assert.equal(wasmHeapBytes(), heap);
  t.dispose();
  model.dispose();
});

test('a tape through streamed weights is refused with a reason, not a crash', () => {
  const { config, stored } = storedModel(false);
  const model = LlamaModel.fromTensors(config, stored, 'fixture', { baseWeights: 'streamed' });
  const ids = Int32Array.from({ length: SEQ }, (_, i) => i);
  const x = tf.variable(tf.zeros([1]));
  assert.throws(
    () => tf.variableGrads(() => tf.add(tf.sum(model.hidden(ids, 1, SEQ)), tf.sum(x)) as tf.Scalar, [x]),
    /streamed base weights need per-layer recomputation/,
  );
  x.dispose();
  model.dispose();
});

test('an attention block or head chunk below one token is refused, naming the field', () => {
  const { config, stored } = storedModel(false);
  const model = LlamaModel.fromTensors(config, stored, 'fixture');
  for (const [key, value] of [
    ['attentionBlock', 0],
    ['headChunkTokens', 2.5],
  ] as const) {
    assert.throws(
      () =>
        AdapterTrainer.create({
          model,
          task: task({ training: { seqLen: SEQ } }),
          examples: [],
          engine: { [key]: value },
        }),
      new RegExp(`trainer: ${key} must be a positive integer, got ${value}`),
    );
  }
  model.dispose();
});
