// The pruning masks of lora.sparsity (shared/lora/sparsity.ts), computed once from the adapter the
// trainer starts from. SNIP's saliency |θ·∂L/∂θ| needs a gradient, summed over a few training
// batches drawn from the whole training set with their own seed (the same batches in every replica,
// so replicas prune the same entries). Two LoRA details:
// - B starts at zero, so |B·∂L/∂B| is zero everywhere: for an all-zero B the saliency is |∂L/∂B|,
//   how fast the loss moves when the entry leaves zero.
// - With B = 0 every ∂L/∂A is zero too (ΔW = s·B·A). A's gradient is taken with B moved a small step
//   along −∂L/∂B (unit Frobenius norm per module, times 1e-2), the direction its first update takes.
import { tf } from '../tensor/engine.ts';
import { deriveSeed } from '../tensor/random.ts';
import type { LlamaModel } from '../model/llama.ts';
import { nextTokenLossSum, type TokenBatch } from '../model/loss.ts';
import type { LoraRuntime } from '../lora/runtime.ts';
import { pruneMask, randomSaliency } from '../lora/sparsity.ts';
import type { LoraSparsity } from '../lora/types.ts';
import type { FlatLayout } from './layout.ts';

/** How far the probe moves B (relative to a unit-norm step), small enough to leave the model as it is. */
const PROBE = 1e-2;

/** Flat mask over the layout (1 = pruned) for the adapter in `params` (pushed into `runtime`). */
export function pruneMasks(opts: {
  model: LlamaModel;
  runtime: LoraRuntime;
  layout: FlatLayout;
  params: Float32Array;
  sparsity: LoraSparsity;
  seed: number;
  batches: () => TokenBatch[];
}): Uint8Array {
  const { layout, params, sparsity, seed } = opts;
  const saliency = new Float64Array(layout.size);
  if (sparsity.criterion === 'magnitude') {
    for (let i = 0; i < params.length; i++) saliency[i] = Math.abs(params[i]);
  } else if (sparsity.criterion === 'random') {
    saliency.set(randomSaliency(layout.size, deriveSeed(seed, 0x5a2)));
  } else {
    snipSaliency(opts, saliency);
  }
  const mask = new Uint8Array(layout.size);
  layout.slots.forEach((s, i) => {
    const tie = (factor: number) => deriveSeed(seed, 0x5a3, i, factor);
    mask.set(pruneMask(saliency.subarray(s.offset, s.offset + s.aLength), sparsity.ratio, tie(0)), s.offset);
    const b = s.offset + s.aLength;
    mask.set(pruneMask(saliency.subarray(b, b + s.bLength), sparsity.ratio, tie(1)), b);
  });
  return mask;
}

function snipSaliency(opts: Parameters<typeof pruneMasks>[0], out: Float64Array): void {
  const { model, runtime, layout, params } = opts;
  const batches = opts.batches();
  const named = runtime.namedVariables();
  const vars = layout.slots.flatMap((s) => [named.get(`${s.path}.lora_A`)!, named.get(`${s.path}.lora_B`)!]);
  const gradient = (): Float32Array => {
    const flat = new Float32Array(layout.size);
    for (const batch of batches) {
      const { value, grads } = tf.variableGrads(() => nextTokenLossSum(model, batch, { lora: runtime }), vars);
      value.dispose();
      layout.slots.forEach((s, i) => {
        const add = (v: tf.Variable, at: number) => {
          const g = grads[v.name].dataSync();
          for (let j = 0; j < g.length; j++) flat[at + j] += g[j];
        };
        add(vars[2 * i], s.offset);
        add(vars[2 * i + 1], s.offset + s.aLength);
      });
      tf.dispose(grads);
    }
    return flat;
  };
  const zeroB = layout.slots.map((s) =>
    params.subarray(s.offset + s.aLength, s.offset + s.aLength + s.bLength).every((v) => v === 0),
  );
  const g = gradient();
  let gA = g;
  if (zeroB.some(Boolean)) {
    // Probe: B a small step along −∂L/∂B where it is zero, then A's gradient there.
    tf.tidy(() => {
      layout.slots.forEach((s, i) => {
        if (!zeroB[i]) return;
        const at = s.offset + s.aLength;
        const gb = g.subarray(at, at + s.bLength);
        let norm = 0;
        for (const v of gb) norm += v * v;
        norm = Math.sqrt(norm);
        const probe = Float32Array.from(gb, (v) => (norm > 0 ? (-PROBE * v) / norm : 0));
        vars[2 * i + 1].assign(tf.tensor(probe, vars[2 * i + 1].shape, 'float32'));
      });
    });
    gA = gradient();
    // Back to the adapter's own values.
    tf.tidy(() => {
      layout.slots.forEach((s, i) => {
        const at = s.offset + s.aLength;
        vars[2 * i + 1].assign(tf.tensor(params.slice(at, at + s.bLength), vars[2 * i + 1].shape, 'float32'));
      });
    });
  }
  layout.slots.forEach((s, i) => {
    for (let j = s.offset; j < s.offset + s.aLength; j++) out[j] = Math.abs(params[j] * gA[j]);
    for (let j = s.offset + s.aLength; j < s.offset + s.aLength + s.bLength; j++) {
      out[j] = zeroB[i] ? Math.abs(g[j]) : Math.abs(params[j] * g[j]);
    }
  });
}
