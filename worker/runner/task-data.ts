// Loading what a runner trains on, through the training core's loaders (HF model directory; JSONL
// in the three shapes, tokenised with the model's tokenizer when a line needs it). Runs inside the
// runner (thread or process), never on the agent's event loop, and caches the model so a runner
// that takes several shards of one base model reads it once.
import type { LlamaModel } from '../../shared/model/llama.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import type { Example } from '../../shared/data/dataset.ts';

// A runner runs one shard (or one evaluation) at a time, so it keeps ONE base model: asking for a
// different one disposes the previous model's tensors instead of keeping every model ever used.
let cached: { dir: string; baseWeights: 'resident' | 'streamed'; model: Promise<LlamaModel> } | null = null;

/** The base model with its weights where the memory plan put them (a cached model placed otherwise is replaced). */
export function loadModel(dir: string, baseWeights: 'resident' | 'streamed' = 'resident'): Promise<LlamaModel> {
  if (cached?.dir === dir && cached.baseWeights === baseWeights) return cached.model;
  if (cached)
    void cached.model.then(
      (m) => m.dispose(),
      () => {},
    );
  const p = loadBaseModel(dir, { baseWeights });
  const entry = { dir, baseWeights, model: p };
  cached = entry;
  p.catch(() => {
    if (cached === entry) cached = null;
  });
  return p;
}

export interface TaskData {
  train: Example[];
  eval: Example[] | undefined;
  padId: number;
}

export async function loadTaskData(
  modelDir: string,
  vocabSize: number,
  train: string,
  evalFile?: string,
): Promise<TaskData> {
  const loader = new DataLoader(modelDir, vocabSize);
  const trainEx = await loader.load(train);
  const evalEx = evalFile ? await loader.load(evalFile) : undefined;
  return { train: trainEx, eval: evalEx, padId: await loader.padId() };
}

/** Examples of one file (tests and the single-process reference use it). */
export async function loadExamples(file: string, modelDir: string, vocabSize: number): Promise<Example[]> {
  return new DataLoader(modelDir, vocabSize).load(file);
}
