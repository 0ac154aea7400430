// `chorus extract --base base/ --tuned finetuned/ (--rank 16 | --energy 0.9) [--target q_proj,v_proj]
// --out lora/`: a LoRA adapter from the difference of two Hugging Face model directories (PHLoRA).
import type { Command } from 'commander';
import { ChorusError } from '../../shared/errors.ts';
import { readHfModelDir } from '../../shared/formats/hf-model.ts';
import { writePeftAdapter } from '../../shared/formats/peft.ts';
import { extractAdapter, selectModules } from '../../shared/merge/index.ts';
import { parseDtype, parseNumber } from './merge.ts';

export function register(program: Command): void {
  program
    .command('extract')
    .description('extract a LoRA adapter from a fine-tuned model: truncated SVD of W_tuned − W_base per module')
    .requiredOption('--base <dir>', 'base model directory (Hugging Face, safetensors)')
    .requiredOption('--tuned <dir>', 'fine-tuned model directory with the same architecture')
    .requiredOption('--out <dir>', 'output PEFT directory')
    .option('--rank <n>', 'rank per module')
    .option('--energy <fraction>', 'smallest rank per module keeping this fraction of Σσ², in (0, 1]')
    .option('--target <names>', 'comma-separated module names, e.g. q_proj,v_proj (default: every 2-D weight but embeddings/lm_head)')
    .option('--seed <n>', 'seed of the randomized SVD', '0')
    .option('--dtype <dtype>', 'dtype written: F32, F16 or BF16', 'F32')
    .action(async (o) => {
      if ((o.rank === undefined) === (o.energy === undefined)) throw new ChorusError('give exactly one of --rank or --energy');
      const rank = parseNumber(o.rank, '--rank');
      if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1)) throw new ChorusError(`--rank must be a positive integer, got "${o.rank}"`);
      const energy = parseNumber(o.energy, '--energy');
      const seed = parseNumber(o.seed, '--seed')!;
      const dtype = parseDtype(o.dtype);
      const targets = o.target === undefined ? undefined : String(o.target).split(',').map((s) => s.trim()).filter(Boolean);
      if (targets && targets.length === 0) throw new ChorusError('--target is empty');
      const base = await readHfModelDir(o.base);
      // Only read the tuned tensors that will be used: a full model twice is a lot of memory.
      const wanted = new Set(selectModules(base.tensors, targets).map((p) => `${p}.weight`));
      const tuned = await readHfModelDir(o.tuned, { filter: (name) => wanted.has(name) });
      const name = typeof base.config._name_or_path === 'string' ? base.config._name_or_path : o.base;
      const result = extractAdapter(base.tensors, tuned.tensors, {
        rank,
        energy,
        targets,
        seed,
        baseModelNameOrPath: name,
        onModule: (r, i, total) => {
          const what = r.skipped ? 'unchanged, skipped' : `rank ${r.rank}  energy kept ${(100 * r.energyKept).toFixed(2)}%`;
          console.log(`[${i + 1}/${total}] ${r.name} [${r.shape.join('×')}]  ${what}`);
        },
      });
      await writePeftAdapter(o.out, result.adapter, { dtype });
      const kept = result.modules.filter((r) => !r.skipped);
      const mean = kept.reduce((s, r) => s + r.energyKept, 0) / kept.length;
      console.log(`extracted ${kept.length} modules into ${o.out}: mean energy kept ${(100 * mean).toFixed(2)}%`);
    });
}
