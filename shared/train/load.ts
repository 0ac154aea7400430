// Loading what local training, evaluation and export need: the base model from a Hugging Face
// directory, and JSONL data tokenised with the model's tokenizer (only when a line needs one, so
// a model directory without a tokenizer still trains on {"input_ids": …} data).
import { readHfModelStored } from '../formats/hf-stored.ts';
import { parseLlamaConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.ts';
import { needsTokenizer, parseJsonl, readDataText, type Example } from '../data/dataset.ts';

/**
 * The base model, its weights read in their stored dtype (a BF16 checkpoint is never held as float32 on the host):
 * resident widens them into the engine one tensor at a time, streamed keeps them on the host (see model/weights.ts).
 */
export async function loadBaseModel(
  dir: string,
  opts: { baseWeights?: 'resident' | 'streamed' } = {},
): Promise<LlamaModel> {
  const { config, tensors } = await readHfModelStored(dir);
  return LlamaModel.fromTensors(parseLlamaConfig(config, `${dir}/config.json`), tensors, dir, opts);
}

/** Loads JSONL examples; the tokenizer is loaded from modelDir once, only if some line needs it. */
export class DataLoader {
  private tokenizer: Promise<Tokenizer> | null = null;

  constructor(
    private readonly modelDir: string,
    private readonly vocabSize: number,
  ) {}

  /** The pad id to use: the tokenizer's when one was loaded, else 0 (padding is masked anyway). */
  async padId(): Promise<number> {
    return this.tokenizer ? (await this.tokenizer).padId : 0;
  }

  async load(path: string): Promise<Example[]> {
    const text = await readDataText(path);
    let tokenizer: Tokenizer | undefined;
    if (needsTokenizer(text)) {
      this.tokenizer ??= loadTokenizer(this.modelDir, this.vocabSize);
      tokenizer = await this.tokenizer;
    }
    return parseJsonl(text, path, { tokenizer, vocabSize: this.vocabSize });
  }
}
