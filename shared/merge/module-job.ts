// One module of a merge, a round or an extraction, as a plain object that can cross to a merge
// thread (parallel.ts), and the function that runs it where it lands. The tensor engine is set up
// on first use in each thread: every thread has its own.
import { ChorusError, errorMessage } from '../errors.ts';
import type { LoraModule } from '../lora/types.ts';
import { initEngine } from '../tensor/engine.ts';
import { extractModule, type ExtractModuleOptions, type ExtractReport } from './extract.ts';
import { mergeModule } from './merge.ts';
import type { ModuleReport, ResolvedOptions } from './options.ts';
import { reconcileModule, type ReconcileModuleOptions } from './reconcile.ts';

export type ModuleJob =
  | { kind: 'merge'; name: string; mods: LoraModule[]; options: ResolvedOptions }
  | { kind: 'reconcile'; name: string; mods: LoraModule[]; weights: number[]; options: ReconcileModuleOptions }
  | {
      kind: 'extract';
      path: string;
      shape: number[];
      base: Float32Array;
      tuned: Float32Array;
      options: ExtractModuleOptions;
      /** The arrays are the job's own and may be moved to the thread instead of copied. */
      handOver: boolean;
    };

export interface ModuleJobResult {
  module?: LoraModule;
  report: ModuleReport | ExtractReport;
}

/** Runs a job in this thread; `backend` is the engine to use (default: the best that loads). */
export async function runModuleJob(job: ModuleJob, backend?: string): Promise<ModuleJobResult> {
  if ((job.options.precision ?? 'float32') === 'float32') await initEngine(backend, { quiet: true });
  if (job.kind === 'merge') return mergeModule(job.name, job.mods, job.options);
  if (job.kind === 'reconcile') return reconcileModule(job.name, job.mods, job.weights, job.options);
  return extractModule(job.path, job.shape, job.base, job.tuned, job.options);
}

/** What a merge thread sends back: the result, or the error as data (a thrown ChorusError would arrive as a bare Error). */
export type ThreadReply = { ok: ModuleJobResult } | { error: string; chorus: boolean };

export async function runInThread(task: { job: ModuleJob; backend?: string }): Promise<ThreadReply> {
  try {
    return { ok: await runModuleJob(task.job, task.backend) };
  } catch (err) {
    return { error: errorMessage(err), chorus: err instanceof ChorusError };
  }
}
