// Learning-rate schedule: linear warmup, then cosine or linear decay to minLrRatio·lr, or constant.
// `step` is the 0-based optimiser step. The decay part is Hugging Face's
// (progress = (step − warmup) / (steps − warmup)); warmup differs by one step: HF's first step has
// lr 0 (a wasted update), here step k < warmup gets lr·(k+1)/warmup.
import type { TrainingSettings } from './settings.ts';

export type LrScheduleSettings = Pick<TrainingSettings, 'lr' | 'steps' | 'warmupSteps' | 'schedule' | 'minLrRatio'>;

export function learningRate(step: number, s: LrScheduleSettings): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (s.schedule === 'constant') return s.lr;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.steps - s.warmupSteps));
  const decay = s.schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return s.lr * (s.minLrRatio + (1 - s.minLrRatio) * decay);
}
