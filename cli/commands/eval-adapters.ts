// The adapter `chorus eval` runs with: one PEFT directory, or several combined at load time by a
// merge method (`--adapter A --adapter B --merge orthogonal_dropout [--merge-seed N] [--weights …]`),
// e.g. to look at an orthogonal-dropout merge under a few mask draws without writing it out.
import { ChorusError } from '../../shared/errors.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { MERGE_METHODS, type MergeMethod } from '../../shared/merge/options.ts';
import { parseNumber, parseNumberList } from './flags.ts';

export interface EvalMergeFlags {
  merge?: string;
  mergeSeed?: string;
  weights?: string;
  density?: string;
}

/** The one adapter to evaluate, or undefined for the base model alone. */
export async function evalAdapter(dirs: string[], f: EvalMergeFlags): Promise<LoraAdapter | undefined> {
  if (dirs.length <= 1 && f.merge !== undefined) throw new ChorusError('--merge needs two or more --adapter');
  if (dirs.length === 0) return undefined;
  if (dirs.length === 1) return readPeftAdapter(dirs[0]);
  if (f.merge === undefined) {
    throw new ChorusError(
      `${dirs.length} adapters given: pass --merge METHOD to combine them (e.g. orthogonal_dropout)`,
    );
  }
  if (!(MERGE_METHODS as readonly string[]).includes(f.merge)) {
    throw new ChorusError(`--merge: unknown method "${f.merge}" (expected one of ${MERGE_METHODS.join(', ')})`);
  }
  const seed = parseNumber(f.mergeSeed ?? '0', '--merge-seed')!;
  if (!Number.isSafeInteger(seed)) throw new ChorusError(`--merge-seed must be an integer, got "${f.mergeSeed}"`);
  const adapters = [];
  for (const dir of dirs) adapters.push(await readPeftAdapter(dir));
  // The merge library (and its threads) load only when a merge runs.
  const { closeMergeThreads, mergeAdapters } = await import('../../shared/merge/index.ts');
  const { adapter } = await mergeAdapters(adapters, {
    method: f.merge as MergeMethod,
    weights: f.weights === undefined ? undefined : parseNumberList(f.weights, '--weights'),
    density: parseNumber(f.density, '--density'),
    seed,
    labels: dirs,
    threads: 1,
  }).finally(closeMergeThreads);
  return adapter;
}
