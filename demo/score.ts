// The demo's scoring: exact match of greedy answers through the shared generation scorer, and the
// training rows of prompt/completion pairs for pretraining.
import { MAX_LEN, type Example } from './tasks.ts';
import { ByteTokenizer } from '../shared/data/tokenizer.ts';
import type { LlamaModel, LoraProvider } from '../shared/model/llama.ts';
import { scoreGeneration } from '../shared/eval/score.ts';

// The base's vocabulary is the 256 bytes (no special tokens): ids are byte values.
const bytes = new ByteTokenizer(256);
const encodeBytes = (text: string): number[] => bytes.encode(text);

export interface ScoreResult {
  correct: number;
  total: number;
  accuracy: number;
  /** Mean per-character edit similarity of the answers. */
  editSimilarity: number;
  /** A few (prompt, expected, got) triples for display and debugging. */
  samples: Array<{ prompt: string; expected: string; got: string }>;
}

/**
 * Exact match of greedy answers by the shared scorer (shared/eval/score.ts): each prompt is continued
 * until "\n" or MAX_LEN + 1 bytes, and the answer must equal the completion up to its "\n". Works for
 * any model and adapter: the base, a task adapter, a merged one, or one with `activeLayers` pruned.
 */
export function greedyExactMatch(
  examples: Example[],
  model: LlamaModel,
  o: { lora?: LoraProvider; activeLayers?: boolean[] } = {},
): ScoreResult {
  const items = examples.map((e) => ({ prompt: encodeBytes(e.prompt), reference: e.completion }));
  const g = scoreGeneration(model, items, { ...o, tokenizer: bytes, maxNewTokens: MAX_LEN + 1, stop: ['\n'] });
  const correct = g.outputs.filter((x) => x.exact).length;
  return {
    correct,
    total: examples.length,
    accuracy: g.exactMatch,
    editSimilarity: g.editSimilarity,
    samples: g.outputs
      .slice(0, 5)
      .map((x, i) => ({ prompt: examples[i].prompt, expected: x.reference, got: x.prediction })),
  };
}

/** Right-padded training rows with loss weights on the completion's bytes only. */
export function completionBatch(examples: Example[]): { ids: number[][]; weights: number[][] } {
  const enc = examples.map((e) => ({ p: encodeBytes(e.prompt), c: encodeBytes(e.completion) }));
  const T = Math.max(...enc.map((e) => e.p.length + e.c.length));
  const ids: number[][] = [];
  const weights: number[][] = [];
  for (const { p, c } of enc) {
    const row = [...p, ...c];
    // weights[t] = 1 when position t predicts a completion byte (target row[t + 1]).
    const w = row.map((_, t) => (t + 1 >= p.length && t + 1 < row.length ? 1 : 0));
    while (row.length < T) {
      row.push(0);
      w.push(0);
    }
    ids.push(row);
    weights.push(w);
  }
  return { ids, weights };
}
