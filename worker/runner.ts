// One training runner: drives AdapterTrainer for one shard, step by step, and talks to its node
// agent through a port (a MessagePort in a piscina thread, the IPC channel in a GPU child process).
// Sync with the other replicas happens through the agent: gradient sums (sync: gradients) or round
// adapters (sync: weights).
import { performance } from 'node:perf_hooks';
import { initEngine } from '../shared/tensor/engine.ts';
import { AdapterTrainer } from '../shared/train/trainer.ts';
import { errorMessage } from '../shared/errors.ts';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../shared/formats/peft.ts';
import { layerOfModule } from '../shared/lora/types.ts';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.ts';
import type { EvalPlan, HostToRunner, RunnerToHost, ShardPlan, ResumeState } from './protocol.ts';
import { loadModel, loadTaskData } from './task-data.ts';

export interface RunnerPort {
  post(msg: RunnerToHost): void;
  /** Next message from the host (start/stop/gradSum/roundMerged). */
  onMessage(fn: (msg: HostToRunner) => void): void;
}

/** If a stop arrives while a replica waits for the others, give them this long before leaving. */
const STOP_GRACE_MS = 5000;

class Inbox {
  private readonly waiting = new Map<string, (m: HostToRunner) => void>();
  private readonly early = new Map<string, HostToRunner>();
  stopReason: string | null = null;
  private onStop: (() => void) | null = null;

  deliver(msg: HostToRunner): void {
    if (msg.type === 'stop') {
      this.stopReason = msg.reason;
      this.onStop?.();
      return;
    }
    const key = msg.type === 'gradSum' ? `g${msg.step}` : msg.type === 'roundMerged' ? `r${msg.round}` : '';
    if (!key) return;
    const fn = this.waiting.get(key);
    if (fn) {
      this.waiting.delete(key);
      fn(msg);
    } else this.early.set(key, msg);
  }

  /** Waits for the message `key`; resolves null when a stop came and the grace period ran out. */
  wait<T extends HostToRunner>(key: string): Promise<T | null> {
    const got = this.early.get(key);
    if (got) {
      this.early.delete(key);
      return Promise.resolve(got as T);
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const arm = () => {
        timer ??= setTimeout(() => {
          this.waiting.delete(key);
          resolve(null);
        }, STOP_GRACE_MS);
      };
      this.waiting.set(key, (m) => {
        if (timer) clearTimeout(timer);
        resolve(m as T);
      });
      if (this.stopReason) arm();
      this.onStop = arm;
    });
  }
}

export async function runShard(
  port: RunnerPort,
  plan: ShardPlan,
  resume: ResumeState,
  backend: string | undefined,
  inbox: Inbox,
): Promise<void> {
  await initEngine(backend, { quiet: true });
  const t = plan.resolved;
  const model = await loadModel(t.baseModel);
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
  });
  try {
    if (resume.checkpoint)
      trainer.restore(
        decodeCheckpoint(resume.checkpoint, `checkpoint of ${plan.shardId}`),
        `checkpoint of ${plan.shardId}`,
      );
    const total = t.training.steps;
    const sync = plan.replicas > 1 ? plan.sync : null;
    const started = performance.now();
    let tokensSeen = 0;
    let lastLoss: number | null = null;
    const checkpoint = () =>
      port.post({ type: 'checkpoint', step: trainer.step, data: encodeCheckpoint(trainer.state()) });
    while (trainer.step < total) {
      if (inbox.stopReason) {
        checkpoint();
        port.post({ type: 'stopped', step: trainer.step });
        return;
      }
      const step = trainer.step;
      const t0 = performance.now();
      let loss: number;
      let tokens: number;
      let activeLayers: boolean[];
      if (sync?.mode === 'gradients') {
        const g = trainer.computeGradients(step);
        port.post({
          type: 'grads',
          step,
          sums: new Uint8Array(g.gradSums.buffer),
          tokens: g.tokens,
          lossSum: g.lossSum,
        });
        const sum = await inbox.wait<Extract<HostToRunner, { type: 'gradSum' }>>(`g${step}`);
        if (!sum) {
          // The others did not answer in the grace period: leave at the last checkpoint.
          port.post({ type: 'stopped', step });
          return;
        }
        const sums = new Float32Array(sum.sums.slice().buffer);
        trainer.applyGradients(sums, sum.tokens, step);
        loss = sum.tokens > 0 ? sum.lossSum / sum.tokens : Number.NaN;
        tokens = g.inputTokens;
        activeLayers = g.activeLayers;
      } else {
        const r = trainer.trainStep();
        loss = r.loss;
        tokens = r.inputTokens;
        activeLayers = r.activeLayers;
      }
      tokensSeen += tokens;
      lastLoss = loss;
      const seconds = (performance.now() - t0) / 1000;
      port.post({
        type: 'progress',
        step: step + 1,
        loss,
        lr: trainer.learningRateAt(step),
        p: trainer.probabilityAt(step),
        tokens: tokensSeen,
        tokensPerSec: seconds > 0 ? tokens / seconds : 0,
        activeLayers: activeLayers.flatMap((on, l) => (on ? [l] : [])),
        numLayers: activeLayers.length,
      });
      const done = step + 1;
      if (sync?.mode === 'weights' && (done % sync.every === 0 || done === total)) {
        const round = Math.ceil(done / sync.every);
        port.post({ type: 'roundAdapter', round, step: done, adapter: adapterToObjectBytes(trainer.getAdapter()) });
        const merged = await inbox.wait<Extract<HostToRunner, { type: 'roundMerged' }>>(`r${round}`);
        if (!merged) {
          port.post({ type: 'stopped', step: trainer.step });
          return;
        }
        trainer.setAdapter(adapterFromObjectBytes(merged.adapter, `round ${round} adapter`), { resetMoments: true });
        checkpoint();
      } else if (done % plan.checkpointEvery === 0 && done < total) {
        checkpoint();
      }
    }
    port.post({
      type: 'done',
      adapter: adapterToObjectBytes(trainer.getAdapter()),
      summary: {
        steps: trainer.step,
        tokens: tokensSeen,
        finalLoss: lastLoss,
        seconds: (performance.now() - started) / 1000,
      },
    });
  } finally {
    trainer.dispose();
  }
}

/** Evaluates a task adapter with only the layers of each coalition on (Shapley values). */
export async function runEval(
  plan: EvalPlan,
  adapterBytes: Uint8Array,
  backend: string | undefined,
): Promise<number[]> {
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
    return plan.coalitions.map((coalition) => {
      const on = new Set(coalition);
      // A layer outside the coalition gets B = 0: its adapter adds nothing, as when CoTo skips it.
      const masked = {
        config: full.config,
        modules: new Map(
          [...full.modules].map(([path, m]) => {
            return [path, on.has(layerOfModule(path)) ? m : { ...m, b: new Float32Array(m.b.length) }];
          }),
        ),
      };
      trainer.setAdapter(masked);
      return trainer.evaluate({ maxBatches: plan.maxBatches }).loss;
    });
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
        runShard(port, msg.plan, msg.resume, msg.backend, inbox)
          .catch((err) => port.post({ type: 'failed', error: errorMessage(err) }))
          .finally(resolve);
      } else if (msg.type === 'eval') {
        runEval(msg.plan, msg.adapter, msg.backend)
          .then((losses) => port.post({ type: 'evalDone', losses }))
          .catch((err) => port.post({ type: 'failed', error: errorMessage(err) }))
          .finally(resolve);
      } else inbox.deliver(msg);
    });
  });
}
