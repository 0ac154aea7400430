// Evaluation over examples: mean next-token loss over loss-bearing tokens, perplexity, and the
// fraction of those tokens the model's argmax predicts, with every layer's adapter on (or only the
// layers `activeLayers` keeps: a pruned adapter).
import type { LlamaModel, LoraProvider } from '../model/llama.ts';
import { evaluate } from '../model/loss.ts';
import { evalBatches, type TokenExample } from '../data/batches.ts';

export interface EvalSummary {
  loss: number;
  perplexity: number;
  tokens: number;
  accuracy: number;
}

export interface EvalOptions {
  batchSize: number;
  seqLen: number;
  padId?: number;
  maxBatches?: number;
  activeLayers?: boolean[];
  attentionBlock?: number;
  headChunkTokens?: number;
}

export function evaluateExamples(
  model: LlamaModel,
  lora: LoraProvider | undefined,
  examples: readonly TokenExample[],
  o: EvalOptions,
): EvalSummary {
  let lossSum = 0;
  let tokens = 0;
  let correct = 0;
  for (const batch of evalBatches(examples, { ...o, padId: o.padId ?? 0 })) {
    const r = evaluate(model, batch, {
      ...(lora ? { lora, activeLayers: o.activeLayers } : {}),
      attentionBlock: o.attentionBlock,
      headChunkTokens: o.headChunkTokens,
    });
    lossSum += r.lossSum;
    tokens += r.tokens;
    correct += r.correct;
  }
  const loss = tokens > 0 ? lossSum / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens, accuracy: tokens > 0 ? correct / tokens : NaN };
}
