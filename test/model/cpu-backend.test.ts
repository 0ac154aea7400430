// The same Llama + LoRA forward and a gradient on the pure-JS cpu backend (the wasm tests cover
// the rest), against the float64 reference; tolerance as in llama.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { LlamaModel } from '../../shared/model/llama.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { nextTokenLoss } from '../../shared/model/loss.ts';
import { refForward, refLoss } from './reference.ts';
import { makeFixture, randomAdapter, randomIds, refLoraOf } from './fixture.ts';

await initEngine('cpu', { quiet: true });

test('cpu backend: LoRA forward and a finite-difference gradient match the reference', () => {
  assert.equal(tf.getBackend(), 'cpu');
  const fx = makeFixture(
    {
      hiddenSize: 16,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      vocabSize: 24,
      intermediateSize: 20,
    },
    6,
  );
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, ['v_proj', 'up_proj'], 2, 4, 7);
  const lora = LoraRuntime.fromAdapter(model, adapter);
  const ids = randomIds(fx.config.vocabSize, 1, 6, 2);
  const got = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, 6], 'int32'), { lora }).dataSync());
  const ref = refForward(fx.ref, fx.refWeights, ids[0], refLoraOf(adapter));
  let maxDiff = 0;
  let scale = 0;
  ref.forEach((row, t) =>
    row.forEach((v, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - got[t * fx.config.vocabSize + j]));
      scale = Math.max(scale, Math.abs(v));
    }),
  );
  assert.ok(maxDiff <= 1e-4 * scale, `max diff ${maxDiff} (scale ${scale})`);

  const mask = [[0, 1, 1, 1, 1, 1]];
  const batch = { inputIds: Int32Array.from(ids[0]), targetMask: Float32Array.from(mask[0]), batchSize: 1, seqLen: 6 };
  const aVar = lora.namedVariables().get('model.layers.1.mlp.up_proj.lora_A')!;
  const { grads } = tf.variableGrads(() => nextTokenLoss(model, batch, { lora }), [aVar]);
  const g = grads[aVar.name].dataSync();
  const refLora = refLoraOf(adapter);
  const a = refLora.get('model.layers.1.mlp.up_proj')!.a;
  const i = 5;
  const h = 1e-5;
  a[i] += h;
  const up = refLoss(fx.ref, fx.refWeights, ids, mask, refLora);
  a[i] -= 2 * h;
  const down = refLoss(fx.ref, fx.refWeights, ids, mask, refLora);
  const fd = (up - down) / (2 * h);
  assert.ok(Math.abs(g[i] - fd) <= 1e-3 * Math.abs(fd) + 1e-6, `autodiff ${g[i]} vs FD ${fd}`);
  lora.dispose();
  model.dispose();
});
