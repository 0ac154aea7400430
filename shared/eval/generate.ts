// Greedy decoding. Each prompt is continued with the argmax token until it emits a stop token (EOS),
// its decoded continuation contains a stop string, or maxNewTokens tokens were generated. Prompts of
// equal length decode together in one batch, in lockstep; with the KV cache (the default) the prompt
// is run once and each later step feeds only the newest token. `useCache: false` recomputes the
// whole sequence every step: the reference the cached path is tested against.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import { KvCache } from '../model/kv-cache.ts';
import type { LlamaModel, LoraProvider } from '../model/llama.ts';

export interface DecodeOptions {
  maxNewTokens: number;
  /** Generation ends when the decoded continuation contains one of these; the text is cut before it. */
  stop?: readonly string[];
  /** Token ids that end generation (e.g. EOS); they are not part of the output. */
  stopIds?: readonly number[];
  /** Needed for stop strings and for `text`. */
  decode?: (ids: number[]) => string;
  lora?: LoraProvider;
  /** Per layer: false runs that layer without its adapter (a pruned adapter). */
  activeLayers?: boolean[];
  /** Rows decoded together. Default 64. */
  batchSize?: number;
  /** Default true. */
  useCache?: boolean;
}

export interface Decoded {
  /** Generated ids, without a stop id; cut at neither stop strings nor anything else. */
  ids: number[];
  /** decode(ids) cut before the first stop string ('' without a decoder). */
  text: string;
  stoppedBy: 'stop' | 'eos' | 'length';
}

/** `text` cut before the earliest occurrence of any stop string; the text itself when none occurs. */
export function cutAtStop(text: string, stop: readonly string[]): string {
  let end = text.length;
  for (const s of stop) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

function argmaxRows(logits: Float32Array, rows: number, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    const base = r * vocab;
    for (let i = 1; i < vocab; i++) if (logits[base + i] > logits[base + best]) best = i;
    out.push(best);
  }
  return out;
}

/** Logits of the last position of each row, [B·V] flat. */
function lastLogits(model: LlamaModel, rows: number[][], o: DecodeOptions, cache?: KvCache): Float32Array {
  return tf.tidy(() => {
    const B = rows.length;
    const T = rows[0].length;
    const ids = tf.tensor2d(rows.flat(), [B, T], 'int32');
    const logits = model.forward(ids, { lora: o.lora, activeLayers: o.activeLayers, kvCache: cache });
    const V = logits.shape[2];
    return tf.slice(logits, [0, T - 1, 0], [B, 1, V]).dataSync() as Float32Array;
  });
}

function checkOptions(model: LlamaModel, prompts: readonly ArrayLike<number>[], o: DecodeOptions): void {
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1)
    throw new ChorusError(`generate: maxNewTokens must be a positive integer, got ${o.maxNewTokens}`);
  if (o.stop?.length && !o.decode) throw new ChorusError('generate: stop strings need a decoder (a tokenizer)');
  const V = model.config.vocabSize;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new ChorusError(`generate: prompt ${i} is empty (nothing to continue from)`);
    for (let t = 0; t < p.length; t++)
      if (!(p[t] >= 0 && p[t] < V))
        throw new ChorusError(`generate: prompt ${i} has token id ${p[t]} outside the vocabulary (size ${V})`);
  });
}

/** Greedy continuations of `prompts`, in the same order. */
export function greedyDecode(model: LlamaModel, prompts: readonly ArrayLike<number>[], o: DecodeOptions): Decoded[] {
  checkOptions(model, prompts, o);
  const batchSize = o.batchSize ?? 64;
  const stop = o.stop ?? [];
  const stopIds = new Set(o.stopIds ?? []);
  const V = model.config.vocabSize;
  // Rows in one forward pass must share a length: group by prompt length.
  const groups = new Map<number, number[]>();
  prompts.forEach((p, i) => groups.set(p.length, [...(groups.get(p.length) ?? []), i]));
  const out: Decoded[] = new Array(prompts.length);
  for (const idx of groups.values()) {
    for (let s = 0; s < idx.length; s += batchSize) {
      const chunk = idx.slice(s, s + batchSize);
      const rows = chunk.map((i) => Array.from(prompts[i]));
      const gen: number[][] = chunk.map(() => []);
      const why: Array<Decoded['stoppedBy'] | null> = chunk.map(() => null);
      const cache = o.useCache === false ? undefined : new KvCache(model.config.numHiddenLayers);
      try {
        for (let step = 0; step < o.maxNewTokens && why.includes(null); step++) {
          // With the cache, the first step runs the prompts and later steps only the newest token.
          const feed = cache && step > 0 ? rows.map((r) => [r[r.length - 1]]) : rows;
          const next = argmaxRows(lastLogits(model, feed, o, cache), chunk.length, V);
          next.forEach((id, j) => {
            rows[j].push(id);
            if (why[j]) return;
            if (stopIds.has(id)) {
              why[j] = 'eos';
              return;
            }
            gen[j].push(id);
            if (!stop.length) return;
            const text = o.decode!(gen[j]);
            if (cutAtStop(text, stop).length < text.length) why[j] = 'stop';
          });
        }
      } finally {
        cache?.dispose();
      }
      chunk.forEach((i, j) => {
        const text = o.decode ? cutAtStop(o.decode(gen[j]), stop) : '';
        out[i] = { ids: gen[j], text, stoppedBy: why[j] ?? 'length' };
      });
    }
  }
  return out;
}
