// AdamW with decoupled weight decay and bias correction, exactly PyTorch's torch.optim.AdamW
// (amsgrad off): p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
// p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps).
// It runs on flat typed arrays rather than tf ops: gradients arrive as flat arrays anyway (they are
// summed across micro-batches and replicas), the adapter is small next to the model, and plain JS
// arithmetic is identical on every backend, so replicas stay bit-identical. Each parameter range has
// its own step counter `t`, as PyTorch keeps per-parameter state: a CoTo layer that sat out a step
// must not advance its bias correction.

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * Updates params[offset, offset+length) in place with gradient `gradScale · grads[...]` (so callers
 * can pass summed gradients plus 1/tokens·clip without materialising the scaled copy).
 * `t` is the step count of this range AFTER this update (1 on the first update).
 */
export function adamwUpdate(
  params: Float32Array,
  grads: Float32Array,
  m: Float32Array,
  v: Float32Array,
  offset: number,
  length: number,
  t: number,
  gradScale: number,
  h: AdamWHyper,
): void {
  const decay = 1 - h.lr * h.weightDecay;
  const bc1 = 1 - Math.pow(h.beta1, t);
  const sqrtBc2 = Math.sqrt(1 - Math.pow(h.beta2, t));
  const stepSize = h.lr / bc1;
  const b1 = h.beta1;
  const b2 = h.beta2;
  const end = offset + length;
  for (let i = offset; i < end; i++) {
    const g = grads[i] * gradScale;
    const mi = b1 * m[i] + (1 - b1) * g;
    const vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + h.eps);
  }
}
