// `chorus merge A/ B/ … --method ties --weights 1,0.5,1 --density 0.5 --rank 16 --out merged/`:
// merges PEFT LoRA directories (see shared/merge/index.ts for the methods) into a new one.
import type { Command } from 'commander';
import { ChorusError } from '../../shared/errors.ts';
import { readPeftAdapter, writePeftAdapter } from '../../shared/formats/peft.ts';
import { MERGE_METHODS, PRECISIONS, type MergeMethod, type Precision } from '../../shared/merge/options.ts';
import { parseDtype, parseNumber, parseNumberList, parsePositiveInt, parseRank } from './flags.ts';

export function register(program: Command): void {
  program
    .command('merge')
    .description('merge LoRA adapters (PEFT directories) into one')
    .argument('<adapters...>', 'PEFT adapter directories')
    .requiredOption('--method <method>', `one of ${MERGE_METHODS.join(', ')}`)
    .requiredOption('--out <dir>', 'output PEFT directory')
    .option('--weights <list>', 'comma-separated weight per adapter (default all 1)')
    .option('--density <fraction>', 'fraction of entries kept (ties, dare_*, magnitude_prune)')
    .option('--majority-sign <how>', 'sign election for ties: total or frequency', 'total')
    .option('--seed <n>', 'seed of the DARE masks', '0')
    .option('--rank <n|full>', 'output rank (default: Σ ranks for cat/linear/task_arithmetic, max rank otherwise)')
    .option('--space <space>', 'delta (act on s·B·A) or factors (PEFT add_weighted_adapter)', 'delta')
    .option('--dtype <dtype>', 'dtype written: F32, F16 or BF16', 'F32')
    .option(
      '--precision <p>',
      `${PRECISIONS.join(' or ')}: float32 runs on the tensor engine, float64 is the slow reference`,
      'float32',
    )
    .option('--threads <n>', 'modules merged side by side (default: one per core for big modules)')
    .action(async (dirs: string[], o) => {
      if (!(MERGE_METHODS as readonly string[]).includes(o.method)) {
        throw new ChorusError(`--method: unknown method "${o.method}" (expected one of ${MERGE_METHODS.join(', ')})`);
      }
      const seed = parseNumber(o.seed, '--seed')!;
      if (!Number.isSafeInteger(seed)) throw new ChorusError(`--seed must be an integer, got "${o.seed}"`);
      const dtype = parseDtype(o.dtype);
      const adapters = [];
      for (const dir of dirs) adapters.push(await readPeftAdapter(dir));
      const started = Date.now();
      const threads = parsePositiveInt(o.threads, '--threads') ?? 'auto';
      if (!(PRECISIONS as readonly string[]).includes(o.precision)) {
        throw new ChorusError(`--precision must be ${PRECISIONS.join(' or ')}, got "${o.precision}"`);
      }
      // The library (and its threads) load only when a merge runs, not with every chorus command.
      const { closeMergeThreads, mergeAdapters } = await import('../../shared/merge/index.ts');
      const result = await mergeAdapters(adapters, {
        method: o.method as MergeMethod,
        weights: o.weights === undefined ? undefined : parseNumberList(o.weights, '--weights'),
        density: parseNumber(o.density, '--density'),
        majoritySign: o.majoritySign,
        seed,
        rank: parseRank(o.rank),
        space: o.space,
        labels: dirs,
        precision: o.precision as Precision,
        threads,
        onModule: (r, i, total) => {
          const energy = r.energyKept < 1 ? `  energy kept ${(100 * r.energyKept).toFixed(2)}%` : '';
          console.log(`[${i + 1}/${total}] ${r.name}  rank ${r.rank}${energy}`);
        },
      }).finally(closeMergeThreads);
      await writePeftAdapter(o.out, result.adapter, { dtype });
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `merged ${dirs.length} adapters (${o.method}, ${o.space} space) into ${o.out}: ${result.modules.length} modules, r=${result.adapter.config.r}, ${secs}s`,
      );
    });
}
