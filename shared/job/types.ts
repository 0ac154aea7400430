// A job as the rest of Chorus sees it: every task fully resolved into the library's own settings
// (camelCase, defaults applied). The file form (snake_case YAML/JSON) exists only inside shared/job/.
import type { CotoSchedule } from '../coto/schedule.ts';
import type { LoraConfig } from '../lora/types.ts';
import type { MergeOptions } from '../merge/options.ts';
import type { ReconcileMethod } from '../merge/reconcile.ts';
import type { TrainingSettings } from '../train/settings.ts';

/** One adapter to train: what a trainer runs. */
export interface ResolvedTask {
  name: string;
  baseModel: string;
  data: { train: string; eval?: string };
  /** Data-parallel replicas. */
  replicas: number;
  /** Seeds LoRA initialisation, data order, dropout and the CoTo draws. */
  seed: number;
  lora: LoraConfig;
  /** null: plain LoRA (CoTo off). */
  coto: CotoSchedule | null;
  training: TrainingSettings;
}

export type SyncSpec =
  { mode: 'gradients' } | { mode: 'weights'; every: number; method: Extract<ReconcileMethod, 'mean' | 'cat_svd'> };

/** The final merge of the task adapters. */
export type JobMerge = Pick<
  MergeOptions,
  'method' | 'weights' | 'density' | 'majoritySign' | 'seed' | 'rank' | 'space'
>;

export interface JobSpec {
  name?: string;
  baseModel: string;
  seed: number;
  tasks: ResolvedTask[];
  sync: SyncSpec;
  /** null: the task adapters are not merged. */
  merge: JobMerge | null;
  /** The file the spec came from, when it came from one (relative paths were resolved against it). */
  sourcePath?: string;
}
