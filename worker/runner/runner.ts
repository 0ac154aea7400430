// One training runner: drives AdapterTrainer for one shard, step by step, keeping in step with the
// other replicas through its sync mode (sync.ts), and talks to its node agent through a port (a
// MessagePort in a piscina thread, the IPC channel in a GPU child process).
import { performance } from 'node:perf_hooks';
import { initEngine } from '../../shared/tensor/engine.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { errorMessage } from '../../shared/errors.ts';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../../shared/formats/peft.ts';
import { layerOfModule } from '../../shared/lora/types.ts';
import { encodeCheckpointBlob, restoreCheckpointBlob } from '../../shared/train/checkpoint.ts';
import type { EvalPlan, ShardPlan } from '../../shared/shard/plan.ts';
import { Inbox } from './inbox.ts';
import type { GenerationFigures, ResumeState, RunnerPort } from './protocol.ts';
import { loadTokenizer } from '../../shared/data/tokenizer.ts';
import { scoreDataset } from '../../shared/eval/score.ts';
import { replicaSync } from './sync.ts';
import { loadModel, loadTaskData } from './task-data.ts';
import { planTask } from '../../shared/train/plan-task.ts';
import type { DeviceMemory } from '../../shared/train/memory-limits.ts';

async function runShard(
  port: RunnerPort,
  plan: ShardPlan,
  resume: ResumeState,
  backend: string | undefined,
  inbox: Inbox,
  memory: DeviceMemory | undefined,
): Promise<void> {
  const engine = await initEngine(backend, { quiet: true });
  const t = plan.task;
  // The same plan the coordinator placed by, now with this runner's engine: refused here before loading.
  const memoryPlan = await planTask(
    t,
    engine.backend,
    memory,
    `tasks[${/-t(\d+)-r\d+$/.exec(plan.shardId)?.[1] ?? '?'}].training`,
  );
  const model = await loadModel(t.baseModel, memoryPlan.options.baseWeights);
  const data = await loadTaskData(t.baseModel, model.config.vocabSize, t.data.train, t.data.eval);
  const trainer = AdapterTrainer.create({
    model,
    task: t,
    examples: data.train,
    evalExamples: data.eval,
    replica: plan.replica,
    replicas: plan.replicas,
    baseModelName: t.baseModel,
    padId: data.padId,
    engine: memoryPlan.options,
  });
  try {
    if (resume.checkpoint) restoreCheckpointBlob(resume.checkpoint, trainer, `checkpoint of ${plan.shardId}`);
    const total = t.training.steps;
    const sync = replicaSync(plan, trainer, port, inbox);
    const started = performance.now();
    let tokensSeen = 0;
    let lastLoss: number | null = null;
    const checkpoint = () => port.post({ type: 'checkpoint', step: trainer.step, data: encodeCheckpointBlob(trainer) });
    const leave = () => port.post({ type: 'stopped', step: trainer.step });
    while (trainer.step < total) {
      if (inbox.stopReason) {
        checkpoint();
        return leave();
      }
      const step = trainer.step;
      const t0 = performance.now();
      const r = await sync.step(step);
      // The other replicas did not answer in the grace period: leave at the last checkpoint.
      if (!r) return leave();
      tokensSeen += r.inputTokens;
      lastLoss = r.loss;
      const seconds = (performance.now() - t0) / 1000;
      port.post({
        type: 'progress',
        step: step + 1,
        loss: r.loss,
        lr: trainer.learningRateAt(step),
        p: trainer.probabilityAt(step),
        tokens: tokensSeen,
        tokensPerSec: seconds > 0 ? r.inputTokens / seconds : 0,
        activeLayers: r.activeLayers.flatMap((on, l) => (on ? [l] : [])),
        numLayers: r.activeLayers.length,
      });
      const done = step + 1;
      const next = await sync.after(done);
      if (next === 'stopped') return leave();
      if (next === 'round' || (done % plan.checkpointEvery === 0 && done < total)) checkpoint();
    }
    port.post({
      type: 'done',
      adapter: adapterToObjectBytes(trainer.getAdapter()),
      summary: {
        steps: trainer.step,
        tokens: tokensSeen,
        finalLoss: Number.isFinite(lastLoss) ? lastLoss : null,
        seconds: (performance.now() - started) / 1000,
      },
    });
  } finally {
    trainer.dispose();
  }
}

/**
 * Evaluates a task adapter with only the layers of each coalition on (Shapley values), and with
 * plan.generate scores the whole adapter's greedy answers (the task's training.eval_generate).
 */
async function runEval(
  plan: EvalPlan,
  adapterBytes: Uint8Array,
  backend: string | undefined,
): Promise<{ losses: number[]; generation?: GenerationFigures }> {
  await initEngine(backend, { quiet: true });
  const t = plan.task;
  const model = await loadModel(t.baseModel);
  // Coalitions are scored on the eval set, or on the training data when the task has none.
  const data = await loadTaskData(t.baseModel, model.config.vocabSize, t.data.eval ?? t.data.train);
  const trainer = AdapterTrainer.create({
    model,
    task: t,
    examples: data.train,
    evalExamples: data.train,
    adapter: adapterFromObjectBytes(adapterBytes, plan.adapterObject),
    padId: data.padId,
  });
  try {
    const full = trainer.getAdapter();
    let generation: GenerationFigures | undefined;
    if (plan.generate) {
      const tokenizer = await loadTokenizer(t.baseModel, model.config.vocabSize);
      const g = t.training.evalGenerate ?? {};
      const source = t.data.eval ?? t.data.train;
      const s = scoreDataset(
        model,
        data.train,
        tokenizer,
        { lora: trainer.runtime, stop: g.stop, maxNewTokens: g.tokens },
        source,
      );
      generation = { exactMatch: s.exactMatch, editSimilarity: s.editSimilarity, examples: s.examples };
    }
    const losses = plan.coalitions.map((coalition) => {
      const on = new Set(coalition);
      // A layer outside the coalition gets B = 0: its adapter adds nothing, as when CoTo skips it.
      const modules = new Map(
        [...full.modules].map(([path, m]) => [
          path,
          on.has(layerOfModule(path)) ? m : { ...m, b: new Float32Array(m.b.length) },
        ]),
      );
      trainer.setAdapter({ config: full.config, modules });
      return trainer.evaluate({ maxBatches: plan.maxBatches }).loss;
    });
    return { losses, generation };
  } finally {
    trainer.dispose();
  }
}

/** Wires a port to the runner: the first message decides what to do. */
export function serve(port: RunnerPort): Promise<void> {
  const inbox = new Inbox();
  return new Promise<void>((resolve) => {
    port.onMessage((msg) => {
      if (msg.type === 'start') {
        runShard(port, msg.plan, msg.resume, msg.backend, inbox, msg.memory)
          .catch((err) => port.post({ type: 'failed', error: errorMessage(err) }))
          .finally(resolve);
      } else if (msg.type === 'eval') {
        runEval(msg.plan, msg.adapter, msg.backend)
          .then((r) => port.post({ type: 'evalDone', ...r }))
          .catch((err) => port.post({ type: 'failed', error: errorMessage(err) }))
          .finally(resolve);
      } else inbox.deliver(msg);
    });
  });
}
