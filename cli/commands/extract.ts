// `chorus extract --base base/ --tuned finetuned/ (--rank 16 | --energy 0.9) [--target q_proj,v_proj]
// --out lora/`: a LoRA adapter from the difference of two Hugging Face model directories (PHLoRA).
import type { Command } from 'commander';
import { ChorusError } from '../../shared/errors.ts';
import { locateWeights, readHfConfig } from '../../shared/formats/hf-model.ts';
import { writePeftAdapter } from '../../shared/formats/peft.ts';
import { SafetensorsFile } from '../../shared/formats/safetensors.ts';
import type { TensorSource } from '../../shared/merge/extract.ts';
import { PRECISIONS, type Precision } from '../../shared/merge/options.ts';
import { parseDtype, parseNumber, parsePositiveInt } from './flags.ts';

/** A model directory read lazily: headers now, one tensor at a time later (models need not fit twice). */
async function openModel(dir: string): Promise<TensorSource & { close(): Promise<void> }> {
  const where = await locateWeights(dir);
  const files = new Map<string, SafetensorsFile>();
  const shapes = new Map<string, { shape: number[] }>();
  try {
    for (const [name, path] of where) {
      let f = files.get(path);
      if (!f) {
        f = await SafetensorsFile.open(path);
        files.set(path, f);
      }
      if (!f.header.tensors.has(name))
        throw new ChorusError(`${path}: missing tensor "${name}" (the weights index says it is in this shard)`);
      shapes.set(name, { shape: f.info(name).shape });
    }
  } catch (err) {
    for (const f of files.values()) await f.close();
    throw err;
  }
  return {
    shapes,
    load: (name) => files.get(where.get(name)!)!.readFloat32(name),
    close: async () => {
      for (const f of files.values()) await f.close();
    },
  };
}

export function register(program: Command): void {
  program
    .command('extract')
    .description('extract a LoRA adapter from a fine-tuned model: truncated SVD of W_tuned − W_base per module')
    .requiredOption('--base <dir>', 'base model directory (Hugging Face, safetensors)')
    .requiredOption('--tuned <dir>', 'fine-tuned model directory with the same architecture')
    .requiredOption('--out <dir>', 'output PEFT directory')
    .option('--rank <n>', 'rank per module')
    .option('--energy <fraction>', 'smallest rank per module keeping this fraction of Σσ², in (0, 1]')
    .option(
      '--target <names>',
      'comma-separated module names, e.g. q_proj,v_proj (default: every 2-D weight but embeddings/lm_head)',
    )
    .option('--seed <n>', 'seed of the randomized SVD', '0')
    .option('--dtype <dtype>', 'dtype written: F32, F16 or BF16', 'F32')
    .option(
      '--precision <p>',
      `${PRECISIONS.join(' or ')}: float32 runs on the tensor engine, float64 is the slow reference`,
      'float32',
    )
    .option('--threads <n>', 'modules extracted side by side (default: one per core for big modules)')
    .action(async (o) => {
      if ((o.rank === undefined) === (o.energy === undefined))
        throw new ChorusError('give exactly one of --rank or --energy');
      const rank = parseNumber(o.rank, '--rank');
      if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1))
        throw new ChorusError(`--rank must be a positive integer, got "${o.rank}"`);
      const energy = parseNumber(o.energy, '--energy');
      const seed = parseNumber(o.seed, '--seed')!;
      const dtype = parseDtype(o.dtype);
      const threads = parsePositiveInt(o.threads, '--threads') ?? 'auto';
      if (!(PRECISIONS as readonly string[]).includes(o.precision)) {
        throw new ChorusError(`--precision must be ${PRECISIONS.join(' or ')}, got "${o.precision}"`);
      }
      const targets =
        o.target === undefined
          ? undefined
          : String(o.target)
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean);
      if (targets && targets.length === 0) throw new ChorusError('--target is empty');
      // The library (and its threads) load only when an extraction runs, not with every chorus command.
      const { closeMergeThreads, extractAdapterFrom } = await import('../../shared/merge/index.ts');
      const config = await readHfConfig(o.base);
      const base = await openModel(o.base);
      const tuned = await openModel(o.tuned).catch(async (err) => {
        await base.close();
        throw err;
      });
      const name = typeof config._name_or_path === 'string' ? config._name_or_path : o.base;
      let result;
      try {
        result = await extractAdapterFrom(base, tuned, {
          rank,
          energy,
          targets,
          seed,
          baseModelNameOrPath: name,
          precision: o.precision as Precision,
          threads,
          onModule: (r, i, total) => {
            const what = r.skipped
              ? 'unchanged, skipped'
              : `rank ${r.rank}  energy kept ${(100 * r.energyKept).toFixed(2)}%`;
            console.log(`[${i + 1}/${total}] ${r.name} [${r.shape.join('×')}]  ${what}`);
          },
        });
      } finally {
        await closeMergeThreads();
        await base.close();
        await tuned.close();
      }
      await writePeftAdapter(o.out, result.adapter, { dtype });
      const kept = result.modules.filter((r) => !r.skipped);
      const mean = kept.reduce((s, r) => s + r.energyKept, 0) / kept.length;
      console.log(`extracted ${kept.length} modules into ${o.out}: mean energy kept ${(100 * mean).toFixed(2)}%`);
    });
}
