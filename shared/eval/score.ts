// Generation-based scores of prompt/completion data: the model greedily continues each prompt
// (shared/eval/generate.ts) and its text, cut at the first stop string, is compared with the
// reference completion cut the same way. Exact match: the two are equal. Edit similarity:
// 1 − Levenshtein(prediction, reference) / max(lengths), over Unicode code points (1 when both are
// empty); both are means over the examples. The one rule used by `chorus eval --generate`, the demo,
// the cluster's final scoring and the CoTo benchmark.
import { ChorusError } from '../errors.ts';
import type { Example } from '../data/dataset.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { LlamaModel } from '../model/llama.ts';
import { cutAtStop, greedyDecode, type DecodeOptions } from './generate.ts';

/** Levenshtein distance over code points (unit costs), two-row dynamic programme. */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[y.length];
}

export function editSimilarity(prediction: string, reference: string): number {
  const n = Math.max([...prediction].length, [...reference].length);
  return n === 0 ? 1 : 1 - editDistance(prediction, reference) / n;
}

export interface GenerationItem {
  prompt: ArrayLike<number>;
  /** The expected completion text (cut at the first stop string before comparing). */
  reference: string;
}

interface GenerationOutput {
  reference: string;
  prediction: string;
  exact: boolean;
  similarity: number;
}

export interface GenerationScore {
  /** Fraction of examples whose prediction equals the reference. */
  exactMatch: number;
  /** Mean per-character edit similarity. */
  editSimilarity: number;
  examples: number;
  outputs: GenerationOutput[];
}

export type GenerationOptions = Omit<DecodeOptions, 'decode'> & { tokenizer: Pick<Tokenizer, 'decode'> };

export function scoreGeneration(
  model: LlamaModel,
  items: readonly GenerationItem[],
  o: GenerationOptions,
): GenerationScore {
  if (items.length === 0) throw new ChorusError('generation scores: no examples');
  const stop = o.stop ?? [];
  const decoded = greedyDecode(
    model,
    items.map((it) => it.prompt),
    { ...o, decode: (ids) => o.tokenizer.decode(ids) },
  );
  const outputs = items.map((it, i): GenerationOutput => {
    const reference = cutAtStop(it.reference, stop);
    const prediction = decoded[i].text;
    return {
      reference,
      prediction,
      exact: prediction === reference,
      similarity: editSimilarity(prediction, reference),
    };
  });
  const mean = (f: (o: GenerationOutput) => number) => outputs.reduce((a, x) => a + f(x), 0) / outputs.length;
  return {
    exactMatch: mean((x) => (x.exact ? 1 : 0)),
    editSimilarity: mean((x) => x.similarity),
    examples: outputs.length,
    outputs,
  };
}

/**
 * Prompt/completion examples of a dataset as generation items: the prompt is every token before the
 * completion (BOS included), the reference the completion's decoded text (special tokens dropped).
 * `source` names the file in the error when the data has no prompt/completion lines.
 */
export function completionItems(examples: readonly Example[], tokenizer: Tokenizer, source: string): GenerationItem[] {
  const items: GenerationItem[] = [];
  for (const e of examples) {
    if (e.kind !== 'completion' || e.completionStart === undefined) continue;
    items.push({
      prompt: e.inputIds.subarray(0, e.completionStart),
      reference: tokenizer.decode(e.inputIds.subarray(e.completionStart)),
    });
  }
  if (items.length === 0)
    throw new ChorusError(`${source}: generation needs {"prompt","completion"} lines, and the file has none`);
  return items;
}

/** New tokens per answer when none is given: the longest reference completion, plus one for a stop. */
function defaultMaxNewTokens(examples: readonly Example[]): number {
  return Math.max(1, ...examples.map((e) => e.inputIds.length - (e.completionStart ?? e.inputIds.length))) + 1;
}

/**
 * Generation scores of a dataset's prompt/completion lines: EOS (when the tokenizer has one) and the
 * stop strings end an answer; `maxNewTokens` defaults to defaultMaxNewTokens. What `chorus eval
 * --generate` and the cluster's final scoring (training.eval_generate) both run.
 */
export function scoreDataset(
  model: LlamaModel,
  examples: readonly Example[],
  tokenizer: Tokenizer,
  o: Omit<GenerationOptions, 'tokenizer' | 'maxNewTokens' | 'stopIds'> & { maxNewTokens?: number },
  source: string,
): GenerationScore {
  return scoreGeneration(model, completionItems(examples, tokenizer, source), {
    ...o,
    tokenizer,
    maxNewTokens: o.maxNewTokens ?? defaultMaxNewTokens(examples),
    stopIds: tokenizer.eosId !== undefined ? [tokenizer.eosId] : [],
  });
}
