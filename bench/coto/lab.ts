// What every probe works on: the base model, the tasks, and the adapters trained per (task, arm,
// seed), with the scoring primitives the probes share (exact match through the shared generation
// scorer, teacher-forced loss, merges through the merge library).
import type { LlamaModel } from '../../shared/model/llama.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { mergeAdapters, type MergeOptions } from '../../shared/merge/index.ts';
import { greedyExactMatch } from '../../demo/score.ts';
import type { Arm } from './arms.ts';
import type { BenchTask } from './tasks.ts';
import type { Trained } from './train.ts';

export class Lab {
  /** trained.get(`${task}/${arm}`)[seedIndex] */
  readonly trained = new Map<string, Trained[]>();

  constructor(
    readonly model: LlamaModel,
    readonly tasks: BenchTask[],
    readonly arms: Arm[],
    readonly seeds: number[],
    private readonly log: (line: string) => void,
  ) {}

  get layers(): number {
    return this.model.config.numHiddenLayers;
  }

  adapters(task: string, arm: string): Trained[] {
    const t = this.trained.get(`${task}/${arm}`);
    if (!t) throw new Error(`no adapters for ${task}/${arm}`);
    return t;
  }

  say(line: string): void {
    this.log(line);
  }

  private withRuntime<T>(adapter: LoraAdapter, f: (lora: LoraRuntime) => T): T {
    const lora = LoraRuntime.fromAdapter(this.model, adapter);
    try {
      return f(lora);
    } finally {
      lora.dispose();
    }
  }

  /** Exact match on the task's held-out examples; activeLayers prunes layers' adapters. */
  exactMatch(task: BenchTask, adapter: LoraAdapter, activeLayers?: boolean[]): number {
    return this.withRuntime(
      adapter,
      (lora) => greedyExactMatch(task.eval, this.model, { lora, activeLayers }).accuracy,
    );
  }

  /** Mean teacher-forced loss on the held-out completions. */
  loss(task: BenchTask, adapter: LoraAdapter | null, activeLayers?: boolean[]): number {
    const opts = { batchSize: 128, seqLen: 24, activeLayers };
    if (!adapter) return evaluateExamples(this.model, undefined, task.evalTokens, opts).loss;
    return this.withRuntime(adapter, (lora) => evaluateExamples(this.model, lora, task.evalTokens, opts).loss);
  }

  async merge(adapters: LoraAdapter[], options: MergeOptions): Promise<LoraAdapter> {
    return (await mergeAdapters(adapters, options)).adapter;
  }
}

/** Seed-index pairs for the 1:1 merge and LMC probes: (0,1), (1,2), …, (n−1,0); one pair for n = 2. */
export function seedPairs(n: number): Array<[number, number]> {
  if (n < 2) return [];
  if (n === 2) return [[0, 1]];
  return Array.from({ length: n }, (_, i) => [i, (i + 1) % n] as [number, number]);
}
