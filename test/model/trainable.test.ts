// Full-parameter training mode (LlamaModel.fromTensors(..., { trainable: true })): the gradients of
// the shared next-token loss w.r.t. every base weight — embedding, norms, projections, lm_head (or
// the tied embedding) — equal central finite differences of the independent float64 reference
// (test/model/reference.ts), and that mode's forward is the frozen model's forward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { LlamaModel } from '../../shared/model/llama.ts';
import { nextTokenLoss, type TokenBatch } from '../../shared/model/loss.ts';
import { refLoss, lcg } from './reference.ts';
import { makeFixture, randomIds } from './fixture.ts';

await initEngine('wasm', { quiet: true });

const configs = {
  gqaUntied: {
    hiddenSize: 16,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    vocabSize: 12,
    intermediateSize: 24,
  },
  mhaTied: {
    hiddenSize: 12,
    numHiddenLayers: 1,
    numAttentionHeads: 2,
    numKeyValueHeads: 2,
    headDim: 8,
    vocabSize: 10,
    intermediateSize: 20,
    tieWordEmbeddings: true,
  },
};

/** HF layout [out, in] of a projection / lm_head; the model holds those transposed. */
const heldTransposed = (name: string) => /_proj\.weight$|^lm_head\.weight$/.test(name);

for (const [label, p] of Object.entries(configs)) {
  test(`trainable model: gradients w.r.t. every base weight equal float64 finite differences (${label})`, () => {
    const fx = makeFixture(p, 23);
    const model = LlamaModel.fromTensors(fx.config, fx.tensors, 'fixture', { trainable: true });
    const V = fx.config.vocabSize;
    // Token V-1 never occurs, so its embedding row gets no gradient (and lm_head's row still does).
    const ids = randomIds(V - 1, 2, 6, 9);
    const mask = ids.map((row, b) => row.map((_, t) => (t === 0 || (b === 1 && t === 3) ? 0 : 1)));
    const batch: TokenBatch = {
      inputIds: Int32Array.from(ids.flat()),
      targetMask: Float32Array.from(mask.flat()),
      batchSize: 2,
      seqLen: 6,
    };

    const vars = model.trainableVariables();
    const expectedNames = [...fx.tensors.keys()].filter(
      (n) => !(fx.config.tieWordEmbeddings && n === 'lm_head.weight'),
    );
    assert.deepEqual([...vars.keys()].sort(), expectedNames.sort());
    const { value, grads } = tf.variableGrads(() => nextTokenLoss(model, batch), [...vars.values()]);
    const loss = value.dataSync()[0];
    value.dispose();
    const ref0 = refLoss(fx.ref, fx.refWeights, ids, mask);
    assert.ok(Math.abs(loss - ref0) < 1e-5 * Math.max(1, ref0), `loss ${loss} vs reference ${ref0}`);

    const rand = lcg(4);
    const step = 1e-4;
    let checked = 0;
    for (const [name, variable] of vars) {
      const g = grads[variable.name].dataSync() as Float32Array;
      const w = fx.refWeights.get(name)!;
      const shape = fx.tensors.get(name)!.shape;
      const picks = new Set<number>();
      while (picks.size < Math.min(4, w.length)) picks.add(Math.floor(rand() * w.length));
      if (name === 'model.embed_tokens.weight') {
        picks.add(ids[0][0] * shape[1]); // a used row
        picks.add((V - 1) * shape[1] + 1); // the unused row
      }
      for (const i of picks) {
        const saved = w[i];
        w[i] = saved + step;
        const up = refLoss(fx.ref, fx.refWeights, ids, mask);
        w[i] = saved - step;
        const down = refLoss(fx.ref, fx.refWeights, ids, mask);
        w[i] = saved;
        const fd = (up - down) / (2 * step);
        // HF index i = o·in + c → the held [in, out] variable's index c·out + o.
        const held = heldTransposed(name) ? (i % shape[1]) * shape[0] + Math.floor(i / shape[1]) : i;
        const got = g[held];
        assert.ok(
          Math.abs(got - fd) <= 2e-3 * Math.abs(fd) + 2e-5,
          `${name}[${i}]: engine ${got}, finite difference ${fd}`,
        );
        checked++;
      }
      if (name === 'model.embed_tokens.weight' && !fx.config.tieWordEmbeddings) {
        // Rows of tokens that never occur get exactly zero gradient; used rows do not.
        const H = shape[1];
        assert.ok(
          g.subarray((V - 1) * H, V * H).every((x) => x === 0),
          'unused embedding row has a gradient',
        );
        assert.ok(
          g.subarray(ids[0][0] * H, (ids[0][0] + 1) * H).some((x) => x !== 0),
          'used embedding row has no gradient',
        );
      }
    }
    assert.ok(checked >= 4 * expectedNames.length);
    for (const t of Object.values(grads)) t.dispose();
    model.dispose();
  });
}

test('trainable and frozen models give the same logits; toTensorMap returns the weights given', () => {
  const fx = makeFixture(configs.gqaUntied, 5);
  const frozen = LlamaModel.fromTensors(fx.config, fx.tensors);
  const trainable = LlamaModel.fromTensors(fx.config, fx.tensors, 'fixture', { trainable: true });
  const ids = randomIds(fx.config.vocabSize, 2, 5, 3);
  const run = (m: LlamaModel) => tf.tidy(() => m.forward(tf.tensor2d(ids, [2, 5], 'int32')).dataSync() as Float32Array);
  const a = run(frozen);
  const b = run(trainable);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) <= 1e-5 * Math.max(1, Math.abs(a[i])), `logit ${i}: ${a[i]} vs ${b[i]}`);
  const back = trainable.toTensorMap();
  for (const [name, t] of fx.tensors) assert.deepEqual(back.get(name)!.data, t.data, name);
  assert.throws(() => frozen.trainableVariables(), /trainable: true/);
  frozen.dispose();
  trainable.dispose();
});
