// `chorus export --model base/ --adapter runs/a --out merged/`: folds the adapter into the base
// weights (W + s·B·A, in float64) and writes a Hugging Face directory that needs no adapter.
import type { Command } from 'commander';
import { existsSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { ChorusError } from '../../shared/errors.ts';
import { parseDtype } from './flags.ts';
import { exportMerged } from '../../shared/train/export.ts';

interface ExportFlags {
  model: string;
  adapter: string;
  out: string;
  dtype: string;
  force?: boolean;
}

export function register(program: Command): void {
  program
    .command('export')
    .description('fold a LoRA adapter into its base model and write a Hugging Face model directory')
    .requiredOption('--model <dir>', 'base model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory')
    .requiredOption('--out <dir>', 'output model directory')
    .option('--dtype <dtype>', 'F32 | F16 | BF16', 'F32')
    .option('--force', 'write into a non-empty --out')
    .action(async (f: ExportFlags) => {
      const dtype = parseDtype(f.dtype);
      if (resolve(f.out) === resolve(f.model))
        throw new ChorusError('--out must differ from --model (the base would be overwritten)');
      if (existsSync(f.out) && readdirSync(f.out).length > 0 && !f.force) {
        throw new ChorusError(`${f.out}: directory is not empty (use --force to overwrite)`);
      }
      const { modules } = await exportMerged(f.model, f.adapter, f.out, { dtype });
      process.stderr.write(`chorus: wrote ${f.out} (${modules} LoRA modules folded into the base weights)\n`);
    });
}
