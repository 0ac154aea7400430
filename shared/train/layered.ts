// One micro-batch's LoRA gradients with per-decoder-layer activation recomputation. Public API:
//   layeredGradients(model, batch, opts, sink) → Σ weight · nll (the loss sum)
// The forward keeps only each layer's input [B·T, H] (every other activation dies with its layer's
// scope). The head's gradient w.r.t. the last hidden state comes from the chunked head (model/head.ts).
// The backward then walks the layers from the top: it leases the layer's weights again, recomputes the
// layer from its saved input and pulls the upstream gradient dy through it with tf.grads(f)(xs, dy),
// taking the gradient w.r.t. the layer input (the next dy) and the layer's LoRA variables, which go to
// `sink` at once. So memory holds L layer inputs plus one layer's activations, and with streamed weights
// one layer's widened weights. The recomputation is the same function on the same inputs with the same
// dropout seeds, so it reproduces the forward's values exactly.
// CoTo: an inactive layer runs without LoRA in both passes (no LoRA product, no LoRA gradient), and the
// backward stops at the lowest layer that has an active adapter: nothing below it needs a gradient.
import { tf } from '../tensor/engine.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { TokenBatch } from '../model/loss.ts';
import { defaultHeadChunk, headLossSum, headRowsOf } from '../model/head.ts';
import type { LoraRuntime } from '../lora/runtime.ts';

export interface LayeredOptions {
  lora: LoraRuntime;
  activeLayers: boolean[];
  training: boolean;
  dropoutSeed?: number;
  attentionBlock?: number;
  headChunkTokens?: number;
}

export function layeredGradients(
  model: LlamaModel,
  batch: TokenBatch,
  opts: LayeredOptions,
  sink: (variable: tf.Variable, grad: tf.Tensor) => void,
): number {
  const { batchSize: B, seqLen: T } = batch;
  const L = model.config.numHiddenLayers;
  const rows = headRowsOf(batch.inputIds, batch.targetMask, B, T);
  if (rows.rows.length === 0) return 0;
  const run = { ...opts, batch: B, seqLen: T };
  const varsOf = (l: number) => (opts.activeLayers[l] ? opts.lora.variablesOfLayer(l) : []);
  let lowest = -1;
  for (let l = 0; l < L && lowest < 0; l++) if (varsOf(l).length > 0) lowest = l;

  const inputs: tf.Tensor2D[] = [model.embed(batch.inputIds)];
  let dy: tf.Tensor2D | null = null;
  try {
    for (let l = 0; l < L; l++) {
      const lease = model.weights.layer(l);
      try {
        inputs.push(tf.tidy(() => model.runLayer(l, inputs[l], lease.value, run)));
      } finally {
        lease.release();
      }
    }
    const chunk = opts.headChunkTokens ?? defaultHeadChunk(model.config.vocabSize);
    const top = tf.valueAndGrad((h: tf.Tensor) =>
      headLossSum(model.weights, model.finalNorm(h as tf.Tensor2D), rows, chunk),
    )(inputs[L]);
    const lossSum = top.value.dataSync()[0];
    top.value.dispose();
    dy = top.grad as tf.Tensor2D;
    for (let l = L - 1; l >= lowest && lowest >= 0; l--) {
      const vars = varsOf(l);
      const needInput = l > lowest;
      const xs: tf.Tensor[] = needInput ? [inputs[l], ...vars] : vars;
      const lease = model.weights.layer(l);
      let grads: tf.Tensor[];
      try {
        grads = tf.grads(() => model.runLayer(l, inputs[l], lease.value, run))(xs, dy!);
      } finally {
        lease.release();
      }
      vars.forEach((v, i) => sink(v, grads[i + (needInput ? 1 : 0)]));
      tf.dispose(grads.slice(needInput ? 1 : 0));
      dy!.dispose();
      dy = needInput ? (grads[0] as tf.Tensor2D) : null;
    }
    return lossSum;
  } finally {
    tf.dispose(inputs);
    dy?.dispose();
  }
}
