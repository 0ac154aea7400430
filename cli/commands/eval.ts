// `chorus eval --model base/ [--adapter runs/a] --data eval.jsonl`: prints one JSON line
// {"loss","perplexity","tokens","accuracy"} — mean next-token cross-entropy over the loss-bearing
// tokens (completions for prompt/completion data), its exp, how many tokens, and the fraction the
// argmax predicts (null for plain {"text"} data, which has no labels). Every layer's adapter is on.
import type { Command } from 'commander';
import { initEngine } from '../../shared/tensor/engine.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { parsePositiveInt } from './flags.ts';

interface EvalFlags {
  model: string;
  adapter?: string;
  data: string;
  backend?: string;
  batchSize: string;
  seqLen?: string;
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('evaluate a base model, with or without a LoRA adapter, on JSONL data (one JSON line)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--adapter <dir>', 'PEFT adapter directory (e.g. a chorus train --out)')
    .requiredOption('--data <file>', 'JSONL data: {"text"}, {"prompt","completion"} or {"input_ids"}')
    .option('--backend <name>', 'tensorflow | wasm | cpu')
    .option('--batch-size <n>', 'examples per forward pass', '8')
    .option('--seq-len <n>', 'truncate examples to this many tokens (default: the longest example)')
    .action(async (f: EvalFlags) => {
      const batchSize = parsePositiveInt(f.batchSize, '--batch-size')!;
      await initEngine(f.backend);
      const model = await loadBaseModel(f.model);
      const lora = f.adapter ? LoraRuntime.fromAdapter(model, await readPeftAdapter(f.adapter), f.adapter) : undefined;
      try {
        const loader = new DataLoader(f.model, model.config.vocabSize);
        const examples = await loader.load(f.data);
        const longest = Math.max(2, ...examples.map((e) => e.inputIds.length));
        const seqLen = f.seqLen ? parsePositiveInt(f.seqLen, '--seq-len')! : longest;
        const r = evaluateExamples(model, lora, examples, { batchSize, seqLen, padId: await loader.padId() });
        const labelled = examples.some((e) => e.kind !== 'text');
        process.stdout.write(
          JSON.stringify({
            loss: r.loss,
            perplexity: r.perplexity,
            tokens: r.tokens,
            accuracy: labelled ? r.accuracy : null,
          }) + '\n',
        );
      } finally {
        lora?.dispose();
        model.dispose();
      }
    });
}
