// The single-process reference for gradient-synced cluster runs: R AdapterTrainers (replica r of R,
// the workers' own data sharding) in THIS process, whose gradient sums are added here in replica
// order in float64 and rounded once to float32, then applied by every replica: what R worker
// processes and the coordinator must produce, bit for bit, whatever moved, died or restarted.
// The sum is written here, not taken from coordinator/sync, so the cluster is checked against an
// independent statement of "Σ sums / Σ tokens over replicas".
import { parseJobSpec, taskOf } from '../../shared/job/parse.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { initEngine } from '../../shared/tensor/engine.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { loadModel, loadTaskData } from '../../worker/runner/task-data.ts';

export interface ReferenceRun {
  adapter: LoraAdapter;
  /** tokens[step][replica]: loss-bearing tokens of each replica's batch. */
  tokens: number[][];
}

export async function gradientSyncReference(specText: string, taskName?: string): Promise<ReferenceRun> {
  await initEngine(process.env.CHORUS_TEST_BACKEND ?? 'wasm', { quiet: true });
  const task = taskOf(parseJobSpec(specText), taskName);
  const model = await loadModel(task.baseModel);
  const data = await loadTaskData(task.baseModel, model.config.vocabSize, task.data.train);
  const reps = Array.from({ length: task.replicas }, (_, replica) =>
    AdapterTrainer.create({
      model,
      task,
      examples: data.train,
      replica,
      replicas: task.replicas,
      baseModelName: task.baseModel,
      padId: data.padId,
    }),
  );
  const tokens: number[][] = [];
  try {
    for (let step = 0; step < task.training.steps; step++) {
      const parts = reps.map((r) => r.computeGradients(step));
      const acc = new Float64Array(parts[0].gradSums.length);
      for (const p of parts) for (let i = 0; i < acc.length; i++) acc[i] += p.gradSums[i];
      const total = Float32Array.from(acc);
      const n = parts.reduce((s, p) => s + p.tokens, 0);
      for (const r of reps) r.applyGradients(total, n, step);
      tokens.push(parts.map((p) => p.tokens));
    }
    return { adapter: reps[0].getAdapter(), tokens };
  } finally {
    reps.forEach((r) => r.dispose());
  }
}

/** Names of the modules (and A/B) where two adapters differ in any bit; empty when identical. */
export function bitDifferences(got: LoraAdapter, want: LoraAdapter): string[] {
  const out: string[] = [];
  const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  for (const [path, w] of want.modules) {
    const g = got.modules.get(path);
    if (!g) {
      out.push(`${path} missing`);
      continue;
    }
    for (const k of ['a', 'b'] as const) {
      if (!bytes(g[k]).equals(bytes(w[k]))) {
        let maxDiff = 0;
        for (let i = 0; i < w[k].length; i++) maxDiff = Math.max(maxDiff, Math.abs(g[k][i] - w[k][i]));
        out.push(`${path}.${k} (max |diff| ${maxDiff.toExponential(2)})`);
      }
    }
  }
  if (got.modules.size !== want.modules.size) out.push(`${got.modules.size} modules, expected ${want.modules.size}`);
  return out;
}
