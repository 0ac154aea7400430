// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_: the norm is taken over every
// parameter that has a gradient this step (CoTo's inactive layers have none), and the gradients are
// scaled by min(1, maxNorm / (norm + 1e-6)). The norm is accumulated in float64.

/** L2 norm of `scale · grads` over the given [offset, length) ranges. */
export function globalNorm(grads: Float32Array, ranges: Array<[number, number]>, scale = 1): number {
  let sum = 0;
  for (const [offset, length] of ranges) {
    for (let i = offset, end = offset + length; i < end; i++) sum += grads[i] * grads[i];
  }
  return Math.sqrt(sum) * Math.abs(scale);
}

/** The factor to multiply gradients by; 1 when clipping is off (maxNorm 0) or not needed. */
export function clipCoefficient(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}
