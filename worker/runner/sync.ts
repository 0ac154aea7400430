// How a replica keeps in step with the other replicas of its task: one object per sync mode behind
// one interface, so the runner's loop reads the same for all three.
//   alone      (one replica)       trains on its own data
//   gradients  (sync: gradients)   sends its gradient sums each step, applies the exact sum of all
//   rounds     (sync: weights)     trains alone, and every `every` steps sends its adapter and
//                                  continues from the round's reconciled adapter
import { adapterFromObjectBytes, adapterToObjectBytes } from '../../shared/formats/peft.ts';
import type { ShardPlan } from '../../shared/shard/plan.ts';
import type { AdapterTrainer } from '../../shared/train/trainer.ts';
import type { Inbox } from './inbox.ts';
import type { RunnerPort } from './protocol.ts';

interface StepOutcome {
  /** Mean loss of the step over the global batch (every replica's tokens). */
  loss: number;
  /** Tokens this replica fed the model (throughput). */
  inputTokens: number;
  activeLayers: boolean[];
}

export interface ReplicaSync {
  /** Trains optimiser step `step`; null when the other replicas stopped answering (leave). */
  step(step: number): Promise<StepOutcome | null>;
  /**
   * After `done` steps: 'round' when the adapter was just replaced by a round's result (checkpoint
   * now), 'stopped' when the others stopped answering, else 'next'.
   */
  after(done: number): Promise<'next' | 'round' | 'stopped'>;
}

export function replicaSync(plan: ShardPlan, trainer: AdapterTrainer, port: RunnerPort, inbox: Inbox): ReplicaSync {
  if (plan.replicas < 2) return new Alone(trainer);
  if (plan.sync.mode === 'gradients') return new GradientSteps(trainer, port, inbox);
  return new WeightRounds(trainer, port, inbox, plan.sync.every, plan.task.training.steps);
}

/** One step on this replica's data alone. */
function localStep(trainer: AdapterTrainer): StepOutcome {
  const r = trainer.trainStep();
  return { loss: r.loss, inputTokens: r.inputTokens, activeLayers: r.activeLayers };
}

class Alone implements ReplicaSync {
  constructor(private readonly trainer: AdapterTrainer) {}

  async step(): Promise<StepOutcome> {
    return localStep(this.trainer);
  }

  async after(): Promise<'next'> {
    return 'next';
  }
}

class GradientSteps implements ReplicaSync {
  constructor(
    private readonly trainer: AdapterTrainer,
    private readonly port: RunnerPort,
    private readonly inbox: Inbox,
  ) {}

  async step(step: number): Promise<StepOutcome | null> {
    const g = this.trainer.computeGradients(step);
    this.port.post({
      type: 'grads',
      step,
      sums: new Uint8Array(g.gradSums.buffer),
      tokens: g.tokens,
      lossSum: g.lossSum,
    });
    const sum = await this.inbox.gradSum(step);
    if (!sum) return null;
    this.trainer.applyGradients(new Float32Array(sum.sums.slice().buffer), sum.tokens, step);
    return {
      loss: sum.tokens > 0 ? sum.lossSum / sum.tokens : Number.NaN,
      inputTokens: g.inputTokens,
      activeLayers: g.activeLayers,
    };
  }

  async after(): Promise<'next'> {
    return 'next';
  }
}

class WeightRounds implements ReplicaSync {
  constructor(
    private readonly trainer: AdapterTrainer,
    private readonly port: RunnerPort,
    private readonly inbox: Inbox,
    private readonly every: number,
    private readonly total: number,
  ) {}

  async step(): Promise<StepOutcome> {
    return localStep(this.trainer);
  }

  async after(done: number): Promise<'next' | 'round' | 'stopped'> {
    if (done % this.every !== 0 && done !== this.total) return 'next';
    const round = Math.ceil(done / this.every);
    this.port.post({
      type: 'roundAdapter',
      round,
      step: done,
      adapter: adapterToObjectBytes(this.trainer.getAdapter()),
    });
    const merged = await this.inbox.roundMerged(round);
    if (!merged) return 'stopped';
    // The round's adapter is a new factorisation of ΔW: Adam's moments (in the old A/B basis) restart.
    this.trainer.setAdapter(adapterFromObjectBytes(merged.adapter, `round ${round} adapter`), { resetMoments: true });
    return 'round';
  }
}
