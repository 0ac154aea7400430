// The local training run behind `chorus train`: one task of a job spec, trained in this process.
// Writes into outDir:
//   adapter_model.safetensors + adapter_config.json   the PEFT adapter (at the end, or when stopped)
//   checkpoints/step-N/                               see checkpoint-dir.ts
//   metrics.jsonl                                     one JSON object per line:
//     {"type":"train","step","loss","lr","p","active_layers":[…],"grad_norm","tokens","tokens_per_s","elapsed_s"}
//     {"type":"eval","step","eval_loss","eval_perplexity","eval_accuracy","eval_tokens"}
//   run.json                                          the resolved task, checked again on --resume
// `step` counts completed optimiser steps; `loss` is the token-weighted mean over the steps since
// the previous train line; tokens_per_s counts every token fed to the model (batch × sequence length).
import { mkdir, readFile, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError } from '../errors.ts';
import { initEngine } from '../tensor/engine.ts';
import { writePeftAdapter } from '../formats/peft.ts';
import { loadJobSpec, taskOf } from '../job/parse.ts';
import { specField } from '../job/to-library.ts';
import type { ResolvedTask } from '../job/types.ts';
import { AdapterTrainer } from './trainer.ts';
import { DataLoader, loadBaseModel } from './load.ts';
import { planTask } from './plan-task.ts';
import { latestCheckpoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint } from './checkpoint-dir.ts';

const METRICS_FILE = 'metrics.jsonl';
const RUN_FILE = 'run.json';

export interface TrainMetrics {
  type: 'train';
  step: number;
  loss: number;
  lr: number;
  p: number;
  active_layers: number[];
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
}

export interface EvalMetrics {
  type: 'eval';
  step: number;
  eval_loss: number;
  eval_perplexity: number;
  eval_accuracy: number;
  eval_tokens: number;
}

export interface LocalTrainOptions {
  specPath: string;
  outDir: string;
  resume?: boolean;
  backend?: string;
  /** Which task of a multi-task spec to train (required when it has several). */
  task?: string;
  /** Stop (checkpoint and write the adapter) once this many steps are done. */
  stopAtStep?: number;
  /** Polled after every step: true finishes the step, checkpoints and returns (SIGINT/SIGTERM). */
  shouldStop?: () => boolean;
  onMetrics?: (m: TrainMetrics | EvalMetrics) => void;
  /** Called once the model and data are loaded (and a checkpoint restored), before training. */
  onStart?: (info: { task: ResolvedTask; backend: string; numLayers: number; startStep: number }) => void;
  /** Human-readable notices (stderr in the CLI). */
  log?: (line: string) => void;
}

export interface LocalTrainResult {
  task: ResolvedTask;
  backend: string;
  /** Optimiser steps completed (in all sessions of this run). */
  steps: number;
  /** Step the run started from (0, or the checkpoint it resumed). */
  startStep: number;
  /** True when it stopped before training.steps (signal or stopAtStep). */
  stopped: boolean;
  lastEval?: EvalMetrics;
  tokensPerSecond: number;
  /** Optimiser steps each layer's adapter was active in (CoTo), over the whole run. */
  activationCounts: number[];
}

function pickTask(specPath: string, name: string | undefined): ResolvedTask {
  const spec = loadJobSpec(specPath);
  if (name === undefined && spec.tasks.length > 1) {
    throw new ChorusError(
      `${specPath}: the spec has ${spec.tasks.length} tasks (${spec.tasks.map((t) => t.name).join(', ')}); ` +
        'local training runs one: pass --task NAME (or submit the job to a cluster)',
    );
  }
  return taskOf(spec, name);
}

/** Says how many examples the sequence length cuts, and how many lose every loss-bearing token. */
function warnTruncation(
  file: string,
  examples: readonly { inputIds: Int32Array; lossMask: Uint8Array }[],
  seqLen: number,
  log: (s: string) => void,
): void {
  let cut = 0;
  let empty = 0;
  let longest = 0;
  for (const e of examples) {
    longest = Math.max(longest, e.inputIds.length);
    if (e.inputIds.length <= seqLen) continue;
    cut++;
    if (!e.lossMask.subarray(1, seqLen).some((m) => m !== 0)) empty++;
  }
  if (cut === 0) return;
  log(
    `${file}: ${cut} of ${examples.length} examples are longer than ${specField('training', 'seqLen')} (${seqLen}; longest ${longest} tokens) and are cut` +
      (empty > 0 ? `; ${empty} of them keep no loss-bearing token and teach nothing` : ''),
  );
}

/** Compares the task of this invocation with the one the run was started with. */
async function checkRunFile(outDir: string, task: ResolvedTask, resuming: boolean): Promise<void> {
  const file = join(outDir, RUN_FILE);
  if (resuming) {
    let before: { task?: ResolvedTask } | undefined;
    try {
      before = JSON.parse(await readFile(file, 'utf8'));
    } catch {
      before = undefined;
    }
    if (before?.task) {
      const changed = (['name', 'baseModel', 'data', 'seed', 'lora', 'coto', 'training'] as const).filter(
        (k) => JSON.stringify(before!.task![k]) !== JSON.stringify(task[k]),
      );
      if (changed.length > 0) {
        throw new ChorusError(
          `${outDir}: --resume needs the same job as the run it continues; changed: ${changed.join(', ')} ` +
            `(see ${file})`,
        );
      }
    }
  }
  await writeFile(file, JSON.stringify({ format: 'chorus-run', version: 1, task }, null, 2) + '\n');
}

/** Keeps the metrics of steps ≤ step (a resumed run rewrites what came after its checkpoint). */
async function truncateMetrics(file: string, step: number): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return;
  }
  const kept = text.split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      return (JSON.parse(line) as { step?: number }).step! <= step;
    } catch {
      return false;
    }
  });
  await writeFile(file, kept.map((l) => l + '\n').join(''));
}

export async function runLocalTraining(o: LocalTrainOptions): Promise<LocalTrainResult> {
  const log = o.log ?? (() => {});
  const task = pickTask(o.specPath, o.task);
  const { backend } = await initEngine(o.backend);
  // Planned before anything is loaded: a job that cannot fit is refused here, not by the engine minutes in.
  const plan = await planTask(task, backend);
  log(`memory plan: ${plan.summary}`);
  const model = await loadBaseModel(task.baseModel, { baseWeights: plan.options.baseWeights });
  const trainer = await (async () => {
    const loader = new DataLoader(task.baseModel, model.config.vocabSize);
    const examples = await loader.load(task.data.train);
    const evalExamples = task.data.eval ? await loader.load(task.data.eval) : undefined;
    warnTruncation(task.data.train, examples, task.training.seqLen, log);
    if (task.data.eval && evalExamples) warnTruncation(task.data.eval, evalExamples, task.training.seqLen, log);
    return AdapterTrainer.create({
      model,
      task,
      examples,
      evalExamples,
      baseModelName: task.baseModel,
      padId: await loader.padId(),
      engine: plan.options,
    });
  })().catch((err) => {
    model.dispose();
    throw err;
  });
  try {
    return await loop(o, task, backend, trainer, log);
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

async function loop(
  o: LocalTrainOptions,
  task: ResolvedTask,
  backend: string,
  trainer: AdapterTrainer,
  log: (s: string) => void,
): Promise<LocalTrainResult> {
  const tr = task.training;
  const metricsFile = join(o.outDir, METRICS_FILE);
  await mkdir(o.outDir, { recursive: true });
  const existing = await latestCheckpoint(o.outDir);
  if (o.resume && existing) {
    await checkRunFile(o.outDir, task, true);
    await loadCheckpoint(existing, trainer);
    await truncateMetrics(metricsFile, trainer.step);
    log(`resuming from ${existing} (step ${trainer.step} of ${tr.steps})`);
  } else {
    if (existing) {
      throw new ChorusError(
        `${o.outDir} already holds checkpoints (${existing}): pass --resume to continue it, or choose another --out`,
      );
    }
    if (o.resume) log(`no checkpoint in ${o.outDir}: starting from step 0`);
    await checkRunFile(o.outDir, task, false);
    await writeFile(metricsFile, '');
  }
  const startStep = trainer.step;
  o.onStart?.({ task, backend, numLayers: trainer.model.config.numHiddenLayers, startStep });
  const emit = async (m: TrainMetrics | EvalMetrics) => {
    await appendFile(metricsFile, JSON.stringify(m) + '\n');
    o.onMetrics?.(m);
  };
  let window = { lossSum: 0, tokens: 0, inputTokens: 0, seconds: 0 };
  let total = { inputTokens: 0, seconds: 0 };
  let lastEval: EvalMetrics | undefined;
  let savedAt = -1;
  let stopped = false;
  const started = performance.now();
  while (trainer.step < tr.steps) {
    // Training is synchronous: yield once per step so signal handlers (shouldStop) can run.
    await new Promise((resolve) => setImmediate(resolve));
    const r = trainer.trainStep();
    const done = trainer.step;
    if (r.tokens > 0) window.lossSum += r.loss * r.tokens;
    window.tokens += r.tokens;
    window.inputTokens += r.inputTokens;
    window.seconds += r.seconds;
    total.inputTokens += r.inputTokens;
    total.seconds += r.seconds;
    if (done % tr.logEvery === 0 || done === tr.steps) {
      await emit({
        type: 'train',
        step: done,
        loss: window.tokens > 0 ? window.lossSum / window.tokens : NaN,
        lr: r.lr,
        p: r.p,
        active_layers: r.activeLayers.flatMap((on, l) => (on ? [l] : [])),
        grad_norm: r.gradNorm,
        tokens: window.tokens,
        tokens_per_s: window.seconds > 0 ? window.inputTokens / window.seconds : 0,
        elapsed_s: (performance.now() - started) / 1000,
      });
      window = { lossSum: 0, tokens: 0, inputTokens: 0, seconds: 0 };
    }
    if (task.data.eval && tr.evalEvery > 0 && (done % tr.evalEvery === 0 || done === tr.steps)) {
      const e = trainer.evaluate({ maxBatches: tr.evalBatches });
      lastEval = {
        type: 'eval',
        step: done,
        eval_loss: e.loss,
        eval_perplexity: e.perplexity,
        eval_accuracy: e.accuracy,
        eval_tokens: e.tokens,
      };
      await emit(lastEval);
    }
    if (tr.checkpointEvery > 0 && done % tr.checkpointEvery === 0) {
      await saveCheckpoint(o.outDir, trainer);
      await pruneCheckpoints(o.outDir, tr.keepCheckpoints);
      savedAt = done;
    }
    if (
      (o.stopAtStep !== undefined && done >= o.stopAtStep && done < tr.steps) ||
      (o.shouldStop?.() && done < tr.steps)
    ) {
      stopped = true;
      break;
    }
  }
  if (savedAt !== trainer.step) {
    await saveCheckpoint(o.outDir, trainer);
    await pruneCheckpoints(o.outDir, tr.keepCheckpoints);
  }
  await writePeftAdapter(o.outDir, trainer.getAdapter());
  if (stopped) log(`stopped at step ${trainer.step} of ${tr.steps}; checkpoint saved: continue with --resume`);
  return {
    task,
    backend,
    steps: trainer.step,
    startStep,
    stopped,
    lastEval,
    tokensPerSecond: total.seconds > 0 ? total.inputTokens / total.seconds : 0,
    activationCounts: [...trainer.activation.counts],
  };
}
