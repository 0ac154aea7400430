// Exact-match scoring by greedy decoding: the model continues each prompt one byte at a time until it
// emits "\n" (or MAX_LEN + 1 bytes), and the example counts when the text equals the completion.
// The model is any function from equal-length id rows to the logits of their last position, so the
// pretraining code, the LoRA engine and merged adapters are all scored by the same rule.
import { MAX_LEN, type Example } from './tasks.ts';
import { ByteTokenizer } from '../shared/data/tokenizer.ts';

// The base's vocabulary is the 256 bytes (no special tokens): ids are byte values.
const bytes = new ByteTokenizer(256);
const encodeBytes = (text: string): number[] => bytes.encode(text);
const decodeBytes = (ids: number[]): string => bytes.decode(ids);

export type LastLogits = (rows: number[][]) => Promise<Float32Array[]> | Float32Array[];

const NEWLINE = 10;

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

export interface ScoreResult {
  correct: number;
  total: number;
  accuracy: number;
  /** A few (prompt, expected, got) triples for display and debugging. */
  samples: Array<{ prompt: string; expected: string; got: string }>;
}

export async function greedyExactMatch(examples: Example[], model: LastLogits, batchSize = 64): Promise<ScoreResult> {
  // Rows in one batch must share a length: group by prompt length and decode in lockstep.
  const groups = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const n = encodeBytes(e.prompt).length;
    groups.set(n, [...(groups.get(n) ?? []), i]);
  });
  const outputs: string[] = new Array(examples.length);
  for (const idx of groups.values()) {
    for (let s = 0; s < idx.length; s += batchSize) {
      const chunk = idx.slice(s, s + batchSize);
      const rows = chunk.map((i) => encodeBytes(examples[i].prompt));
      const generated: number[][] = chunk.map(() => []);
      const done = chunk.map(() => false);
      for (let step = 0; step <= MAX_LEN && done.includes(false); step++) {
        const logits = await model(rows);
        chunk.forEach((_, j) => {
          const next = argmax(logits[j]);
          rows[j].push(next);
          if (done[j]) return;
          generated[j].push(next);
          if (next === NEWLINE) done[j] = true;
        });
      }
      chunk.forEach((i, j) => (outputs[i] = decodeBytes(generated[j])));
    }
  }
  let correct = 0;
  const samples: ScoreResult['samples'] = [];
  examples.forEach((e, i) => {
    const ok = outputs[i] === e.completion;
    if (ok) correct++;
    if (samples.length < 5)
      samples.push({ prompt: e.prompt, expected: e.completion.trimEnd(), got: outputs[i].trimEnd() });
  });
  return { correct, total: examples.length, accuracy: examples.length ? correct / examples.length : 0, samples };
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
