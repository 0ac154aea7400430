// `chorus eval --model base/ [--adapter runs/a] --data eval.jsonl [--generate …]`: prints one JSON
// line {"loss","perplexity","tokens","accuracy"} — mean next-token cross-entropy over the
// loss-bearing tokens (completions for prompt/completion data), its exp, how many tokens, and the
// fraction the argmax predicts under teacher forcing (null for plain {"text"} data, which has no
// labels). With --generate the model also greedily continues every prompt (KV-cached decoding) and
// the line gains "exact_match", "edit_similarity" and "generated" (shared/eval/score.ts).
// --adapter-layers keeps only the listed layers' adapters on (a pruned adapter); the default is all.
import type { Command } from 'commander';
import { initEngine } from '../../shared/tensor/engine.ts';
import { ChorusError } from '../../shared/errors.ts';
import { evalAdapter, type EvalMergeFlags } from './eval-adapters.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { loadTokenizer } from '../../shared/data/tokenizer.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { scoreDataset } from '../../shared/eval/score.ts';
import { parseNumberList, parsePositiveInt } from './flags.ts';

interface EvalFlags extends EvalMergeFlags {
  model: string;
  adapter: string[];
  data: string;
  backend?: string;
  batchSize: string;
  seqLen?: string;
  generate?: boolean;
  maxNewTokens?: string;
  stop: string[];
  adapterLayers?: string;
}

/** "\n", "\t" and "\\" in a --stop value are the characters (shells pass them literally). */
function unescapeStop(s: string): string {
  return s.replace(/\\(n|t|\\)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
}

/** --adapter-layers "0,2" → [true, false, true] for 3 layers. */
function parseLayers(text: string, layers: number): boolean[] {
  const on = new Array<boolean>(layers).fill(false);
  for (const l of parseNumberList(text, '--adapter-layers')) {
    if (!Number.isInteger(l) || l < 0 || l >= layers)
      throw new ChorusError(`--adapter-layers: layer ${l} is not a layer of the model (0..${layers - 1})`);
    on[l] = true;
  }
  return on;
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('evaluate a base model, with or without a LoRA adapter, on JSONL data (one JSON line)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option(
      '--adapter <dir>',
      'PEFT adapter directory (e.g. a chorus train --out, or a chorus merge --out); repeat it with --merge',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--merge <method>', 'combine several --adapter at load time (e.g. orthogonal_dropout)')
    .option('--merge-seed <n>', 'with --merge: seed of the masks (orthogonal_dropout, dare_*)')
    .option('--weights <list>', 'with --merge: one weight per adapter')
    .option('--density <fraction>', 'with --merge: fraction kept (ties, dare_*, magnitude_prune)')
    .requiredOption('--data <file>', 'JSONL data: {"text"}, {"prompt","completion"} or {"input_ids"}')
    .option('--backend <name>', 'tensorflow | wasm | cpu')
    .option('--batch-size <n>', 'examples per forward pass', '8')
    .option('--seq-len <n>', 'truncate examples to this many tokens (default: the longest example)')
    .option('--generate', 'also decode greedily and score exact match and edit similarity (prompt/completion data)')
    .option('--max-new-tokens <n>', 'with --generate: tokens per answer (default: longest completion + 1)')
    .option(
      '--stop <s>',
      'with --generate: a stop string (repeatable; "\\n" is a newline); EOS always stops',
      (v: string, acc: string[]) => [...acc, unescapeStop(v)],
      [] as string[],
    )
    .option('--adapter-layers <list>', 'only these layers keep their adapter, e.g. 0,2 (a pruned adapter)')
    .action(async (f: EvalFlags) => {
      const batchSize = parsePositiveInt(f.batchSize, '--batch-size')!;
      if (!f.generate && (f.maxNewTokens !== undefined || f.stop.length > 0))
        throw new ChorusError('--max-new-tokens and --stop need --generate');
      if (f.adapterLayers !== undefined && f.adapter.length === 0)
        throw new ChorusError('--adapter-layers needs --adapter');
      await initEngine(f.backend);
      const model = await loadBaseModel(f.model);
      const adapter = await evalAdapter(f.adapter, f);
      const lora = adapter ? LoraRuntime.fromAdapter(model, adapter, f.adapter.join(' + ')) : undefined;
      try {
        const activeLayers =
          f.adapterLayers !== undefined ? parseLayers(f.adapterLayers, model.config.numHiddenLayers) : undefined;
        const loader = new DataLoader(f.model, model.config.vocabSize);
        const examples = await loader.load(f.data);
        const longest = Math.max(2, ...examples.map((e) => e.inputIds.length));
        const seqLen = f.seqLen ? parsePositiveInt(f.seqLen, '--seq-len')! : longest;
        const r = evaluateExamples(model, lora, examples, {
          batchSize,
          seqLen,
          padId: await loader.padId(),
          activeLayers,
        });
        const labelled = examples.some((e) => e.kind !== 'text');
        const line: Record<string, unknown> = {
          loss: r.loss,
          perplexity: r.perplexity,
          tokens: r.tokens,
          accuracy: labelled ? r.accuracy : null,
        };
        if (f.generate) {
          const tokenizer = await loadTokenizer(f.model, model.config.vocabSize);
          const g = scoreDataset(
            model,
            examples,
            tokenizer,
            {
              maxNewTokens: parsePositiveInt(f.maxNewTokens, '--max-new-tokens'),
              stop: f.stop,
              lora,
              activeLayers,
              batchSize: Math.max(batchSize, 64),
            },
            f.data,
          );
          Object.assign(line, { exact_match: g.exactMatch, edit_similarity: g.editSimilarity, generated: g.examples });
        }
        process.stdout.write(JSON.stringify(line) + '\n');
      } finally {
        lora?.dispose();
        model.dispose();
      }
    });
}
