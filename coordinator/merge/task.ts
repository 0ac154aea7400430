// Adapter math off the coordinator's event loop: a round's reconciliation and the final merge run
// in a worker thread, so a large SVD never delays heartbeats, gradient sums or API calls.
import { mergeAdapters } from '../../shared/merge/merge.ts';
import type { MergeOptions } from '../../shared/merge/options.ts';
import { reconcileReplicas, type ReconcileOptions } from '../../shared/merge/reconcile.ts';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../../shared/formats/peft.ts';

export type MergeTask =
  | { kind: 'reconcile'; adapters: Uint8Array[]; labels: string[]; options: Omit<ReconcileOptions, 'labels'> }
  | { kind: 'merge'; adapters: Uint8Array[]; labels: string[]; options: Omit<MergeOptions, 'labels' | 'onModule'> };

export async function runMergeTask(task: MergeTask): Promise<Uint8Array> {
  const adapters = task.adapters.map((b, i) => adapterFromObjectBytes(b, task.labels[i]));
  // Big modules merge side by side in threads of their own (shared/merge/parallel.ts).
  const threads = 'auto';
  const result =
    task.kind === 'reconcile'
      ? await reconcileReplicas(adapters, { ...task.options, labels: task.labels, threads })
      : await mergeAdapters(adapters, { ...task.options, labels: task.labels, threads });
  return adapterToObjectBytes(result.adapter);
}
