// Loading what a runner trains on: the base model (HF directory) and the task's JSONL data,
// tokenised. Runs inside the runner (thread or process), never on the agent's event loop, and
// caches the model so a runner that takes several shards of one base model reads it once.
import { readFile } from 'node:fs/promises';
import { ChorusError } from '../shared/errors.ts';
import { readHfModelDir } from '../shared/formats/hf-model.ts';
import { parseLlamaConfig } from '../shared/model/config.ts';
import { LlamaModel } from '../shared/model/llama.ts';
import type { TrainExample } from '../shared/train/batches.ts';
import { DataLoader } from '../shared/train/load.ts';

const models = new Map<string, Promise<LlamaModel>>();

export function loadModel(dir: string): Promise<LlamaModel> {
  let p = models.get(dir);
  if (!p) {
    p = (async () => {
      const { config, tensors } = await readHfModelDir(dir);
      return LlamaModel.fromTensors(parseLlamaConfig(config, `${dir}/config.json`), tensors, dir);
    })();
    models.set(dir, p);
    p.catch(() => models.delete(dir));
  }
  return p;
}

/**
 * JSONL examples of the `{"input_ids": [...]}` shape (loss on every predicted token), with an
 * optional `loss_mask`. Bad lines name the file and line.
 */
export async function loadExamples(file: string, vocabSize: number, modelDir?: string): Promise<TrainExample[]> {
  // Text and prompt/completion lines need the model's tokenizer: the shared data loader does those.
  if (modelDir) return new DataLoader(modelDir, vocabSize).load(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ChorusError(`cannot read data file ${file}: ${(err as Error).message}`);
  }
  const out: TrainExample[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let obj: { input_ids?: unknown; loss_mask?: unknown };
    try {
      obj = JSON.parse(line);
    } catch {
      throw new ChorusError(`${file}:${i + 1}: not valid JSON`);
    }
    const ids = obj.input_ids;
    if (!Array.isArray(ids) || ids.length < 2 || !ids.every((x) => Number.isInteger(x) && x >= 0 && x < vocabSize)) {
      throw new ChorusError(`${file}:${i + 1}: input_ids must be a list of at least 2 token ids in [0, ${vocabSize})`);
    }
    const mask = Array.isArray(obj.loss_mask) ? (obj.loss_mask as number[]) : ids.map((_, t) => (t === 0 ? 0 : 1));
    if (mask.length !== ids.length) throw new ChorusError(`${file}:${i + 1}: loss_mask has ${mask.length} entries, input_ids ${ids.length}`);
    out.push({ inputIds: Int32Array.from(ids as number[]), lossMask: Uint8Array.from(mask.map((m) => (m ? 1 : 0))) });
  });
  if (out.length === 0) throw new ChorusError(`${file}: no examples`);
  return out;
}
