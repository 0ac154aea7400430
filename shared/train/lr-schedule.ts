// Learning-rate schedule: linear warmup, then cosine or linear decay to min_lr_ratio·lr, or constant.
// `step` is the 0-based optimiser step. The decay part is Hugging Face's
// (progress = (step − warmup) / (steps − warmup)); warmup differs by one step: HF's first step has
// lr 0 (a wasted update), here step k < warmup gets lr·(k+1)/warmup.

export interface LrScheduleSpec {
  lr: number;
  steps: number;
  warmup_steps: number;
  schedule: 'cosine' | 'linear' | 'constant';
  min_lr_ratio: number;
}

export function learningRate(step: number, s: LrScheduleSpec): number {
  if (step < s.warmup_steps) return (s.lr * (step + 1)) / s.warmup_steps;
  if (s.schedule === 'constant') return s.lr;
  const progress = Math.min(1, (step - s.warmup_steps) / Math.max(1, s.steps - s.warmup_steps));
  const decay = s.schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * decay);
}
