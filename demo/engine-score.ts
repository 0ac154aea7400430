// Scores the base model and LoRA adapter directories with the project's own engine (shared/model +
// LoRA runtime), by the same greedy exact-match rule the pretraining script uses (demo/score.ts).
import { readFileSync } from 'node:fs';
import { loadBaseModel } from '../shared/train/load.ts';
import { readPeftAdapter } from '../shared/formats/peft.ts';
import { LoraRuntime } from '../shared/lora/runtime.ts';
import type { LlamaModel } from '../shared/model/llama.ts';
import { greedyExactMatch, type ScoreResult } from './score.ts';
import type { Example } from './tasks.ts';

export function readExamples(file: string): Example[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Example);
}

export interface Scorer {
  model: LlamaModel;
  /** Exact match of the base model (no adapter) or of the PEFT adapter directory `adapterDir`. */
  score(examples: Example[], adapterDir?: string): Promise<ScoreResult>;
}

export async function createScorer(baseDir: string): Promise<Scorer> {
  const model = await loadBaseModel(baseDir);
  const runtimes = new Map<string, LoraRuntime>();
  return {
    model,
    async score(examples, adapterDir) {
      let lora: LoraRuntime | undefined;
      if (adapterDir) {
        lora = runtimes.get(adapterDir);
        if (!lora) {
          lora = LoraRuntime.fromAdapter(model, await readPeftAdapter(adapterDir), adapterDir);
          runtimes.set(adapterDir, lora);
        }
      }
      return greedyExactMatch(examples, model, { lora });
    },
  };
}
