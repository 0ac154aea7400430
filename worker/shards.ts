// The shards this node runs: each assignment gets a runner on its device; what the runner reports
// is relayed to the coordinator (bulk bytes through the object store first, so the message that
// names an object never overtakes its upload), and what the coordinator answers (gradient sums,
// round results, cancels) goes back to the runner.
import { sha256Hex } from '../shared/digest.ts';
import { errorMessage } from '../shared/errors.ts';
import type * as wire from '../shared/gen/chorus/v1/worker.ts';
import { shardObjects, shardPlanFromWire, type ShardPlan } from '../shared/shard/plan.ts';
import type { BlobTransfer } from './blobs.ts';
import type { DataRoots } from './data-roots.ts';
import { deviceMemory, type DeviceSpec } from './devices.ts';
import { materialiseTask } from './inputs.ts';
import type { RunnerHandle, RunnerHost } from './runner/host.ts';
import type { RunnerToHost } from './runner/protocol.ts';

type Send = (msg: wire.WorkerMessage, important?: boolean) => void;

interface RunningShard {
  plan: ShardPlan;
  device: string;
  /** The coordinator's placement number, echoed in every report. */
  attempt: number;
  handle: RunnerHandle;
  step: number;
  /** Last gradient part / adapter-ready still waiting for its answer: re-sent after a reconnect. */
  pending: wire.WorkerMessage | null;
  /** Per-shard queue, so uploads finish before the message that names them goes out. */
  chain: Promise<void>;
  /** Resolves when the runner's last message (done, failed or stopped) has been queued on `chain`. */
  said: Promise<void>;
}

/** A runner that ends without a last word gets this long for one still in flight before it counts as crashed. */
const LAST_WORD_MS = 2000;

export class ShardSupervisor {
  private readonly running = new Map<string, RunningShard>();

  constructor(
    private readonly opts: { devices: DeviceSpec[]; backend?: string; cacheDir: string; roots: DataRoots },
    private readonly host: RunnerHost,
    private readonly blobs: BlobTransfer,
    private readonly send: Send,
    private readonly log: (line: string) => void,
  ) {}

  /** What a (re)registration tells the coordinator is still running here. */
  list(): wire.RunningShard[] {
    return [...this.running.values()].map((s) => ({
      shardId: s.plan.shardId,
      jobId: s.plan.jobId,
      device: s.device,
      step: s.step,
      attempt: s.attempt,
    }));
  }

  /** Messages whose answer never came (the stream broke): sent again after a reconnect. */
  unanswered(): wire.WorkerMessage[] {
    return [...this.running.values()].flatMap((s) => (s.pending ? [s.pending] : []));
  }

  async assign(a: wire.Assignment): Promise<void> {
    const wirePlan = a.plan!;
    const shardId = wirePlan.shardId;
    const failed = (error: string) =>
      this.send({ kind: { $case: 'shardFailed', value: { shardId, error, attempt: a.attempt } } }, true);
    const device = this.opts.devices.find((d) => d.id === a.device);
    if (!device) return failed(`no device ${a.device} on this worker`);
    const previous = this.running.get(shardId);
    if (previous) {
      // Placed here again (the coordinator restarted and lost track): the new placement wins.
      this.running.delete(shardId);
      previous.handle.kill();
    }
    let plan: ShardPlan;
    let checkpoint: Uint8Array | null = null;
    try {
      plan = shardPlanFromWire(wirePlan);
      if (a.resumeObject) checkpoint = await this.blobs.download(a.resumeObject);
      plan.task = await materialiseTask(
        plan.task,
        this.opts.cacheDir,
        (name) => this.blobs.download(name),
        this.opts.roots,
      );
    } catch (err) {
      return failed(`cannot fetch inputs of ${shardId}: ${errorMessage(err)}`);
    }
    const resuming = a.resumeObject ? `, resuming at step ${a.resumeStep}` : '';
    this.log(
      `worker: shard ${shardId} (${plan.task.name} replica ${plan.replica + 1}/${plan.replicas}) on ${device.id}${resuming}`,
    );
    let lastWord: () => void = () => {};
    const entry: RunningShard = {
      plan,
      device: device.id,
      attempt: a.attempt,
      step: a.resumeStep,
      pending: null,
      chain: Promise.resolve(),
      said: new Promise<void>((r) => (lastWord = r)),
      handle: null as unknown as RunnerHandle,
    };
    this.running.set(shardId, entry);
    const said = entry.said;
    entry.handle = this.host.start(device, (m) => {
      if (m.type === 'done' || m.type === 'failed' || m.type === 'stopped') lastWord();
      entry.chain = entry.chain
        .then(() => this.fromRunner(entry, m))
        .catch((err) => this.fail(shardId, errorMessage(err)));
    });
    entry.handle.send({
      type: 'start',
      plan,
      resume: { step: a.resumeStep, checkpoint },
      backend: this.opts.backend,
      memory: deviceMemory(device),
    });
    void entry.handle.ended.then(async () => {
      // The runner's last message and the end of its task travel separately: wait for the former
      // a moment; a runner that ended without one crashed.
      const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), LAST_WORD_MS));
      const spoke = await Promise.race([said.then(() => true), timeout]);
      if (!spoke && this.running.get(shardId) === entry)
        this.fail(shardId, 'runner ended without finishing, failing or stopping');
    });
  }

  cancel(shardId: string, reason: string): void {
    const s = this.running.get(shardId);
    if (!s) return;
    this.log(`worker: shard ${shardId} cancelled: ${reason}`);
    this.running.delete(shardId);
    s.handle.kill();
  }

  gradientSum(g: wire.GradientSum): void {
    const s = this.running.get(g.shardId);
    if (!s) return;
    if (s.pending?.kind?.$case === 'gradients' && s.pending.kind.value.step === g.step) s.pending = null;
    s.handle.send({
      type: 'gradSum',
      step: g.step,
      sums: new Uint8Array(g.gradSums),
      tokens: g.tokens,
      lossSum: g.lossSum,
    });
  }

  roundMerged(r: wire.RoundMerged): void {
    const s = this.running.get(r.shardId);
    if (!s) return;
    if (s.pending?.kind?.$case === 'adapterReady' && s.pending.kind.value.round === r.round) s.pending = null;
    this.blobs
      .download(r.object)
      .then((bytes) => {
        // The event names the object AND its digest: a replaced or corrupted object must not be trained on.
        const got = sha256Hex(bytes);
        if (r.sha256 && got !== r.sha256)
          throw new Error(`object ${r.object} has SHA-256 ${got}, the coordinator announced ${r.sha256}`);
        s.handle.send({ type: 'roundMerged', round: r.round, adapter: bytes });
      })
      .catch((err) => this.fail(r.shardId, `downloading round ${r.round}: ${errorMessage(err)}`));
  }

  /** SIGTERM: every runner finishes its step and checkpoints, then the runners end. */
  async stopAll(reason: string): Promise<void> {
    const running = [...this.running.values()];
    for (const s of running) s.handle.send({ type: 'stop', reason });
    // Wait for each runner's last word, not just its end: a thread's final messages can arrive
    // after its exit, and 'leaving' must not overtake the checkpoint it took on the way out (the
    // coordinator would resume the shard from an older checkpoint).
    const lastWord = (s: RunningShard) =>
      Promise.race([s.said, s.handle.ended.then(() => new Promise((r) => setTimeout(r, LAST_WORD_MS)))]);
    await Promise.all(running.map((s) => lastWord(s).then(() => s.chain)));
  }

  private async fromRunner(s: RunningShard, m: RunnerToHost): Promise<void> {
    const shardId = s.plan.shardId;
    if (this.running.get(shardId) !== s) return;
    const objects = shardObjects({ ...s.plan, task: s.plan.task.name });
    const attempt = s.attempt;
    switch (m.type) {
      case 'progress': {
        s.step = m.step;
        const { step, loss, lr, p, tokens, activeLayers, numLayers } = m;
        const value = {
          shardId,
          step,
          loss,
          lr,
          p,
          tokens,
          tokensPerS: m.tokensPerSec,
          activeLayers,
          attempt,
          numLayers,
        };
        this.send({ kind: { $case: 'progress', value } });
        return;
      }
      case 'grads': {
        const gradSums = Buffer.from(m.sums.buffer, m.sums.byteOffset, m.sums.byteLength);
        const value = { shardId, step: m.step, gradSums, tokens: m.tokens, lossSum: m.lossSum, attempt };
        s.pending = { kind: { $case: 'gradients', value } };
        this.send(s.pending);
        return;
      }
      case 'roundAdapter': {
        const object = objects.round(m.round);
        const info = await this.blobs.upload(object, m.adapter);
        const value = { shardId, round: m.round, step: m.step, object, sha256: info.sha256, bytes: info.size, attempt };
        s.pending = { kind: { $case: 'adapterReady', value } };
        this.send(s.pending);
        return;
      }
      case 'checkpoint': {
        const info = await this.blobs.upload(objects.checkpoint, m.data);
        const value = { shardId, step: m.step, object: objects.checkpoint, sha256: info.sha256, attempt };
        this.send({ kind: { $case: 'checkpoint', value } }, true);
        return;
      }
      case 'done': {
        const info = await this.blobs.upload(objects.final, m.adapter);
        this.running.delete(shardId);
        const { steps, tokens, finalLoss, seconds } = m.summary;
        const value = {
          shardId,
          object: objects.final,
          sha256: info.sha256,
          attempt,
          steps,
          tokens,
          seconds,
          finalLoss: finalLoss ?? undefined,
        };
        this.send({ kind: { $case: 'shardDone', value } }, true);
        this.log(`worker: shard ${shardId} finished (${steps} steps, ${seconds.toFixed(1)} s)`);
        return;
      }
      case 'stopped':
        this.running.delete(shardId);
        this.log(`worker: shard ${shardId} stopped at step ${m.step}`);
        return;
      case 'failed':
        this.fail(shardId, m.error);
        return;
      case 'evalDone':
        return;
    }
  }

  private fail(shardId: string, error: string): void {
    const s = this.running.get(shardId);
    if (!s) return;
    this.running.delete(shardId);
    s.handle.kill();
    this.log(`worker: shard ${shardId} failed: ${error}`);
    this.send({ kind: { $case: 'shardFailed', value: { shardId, error, attempt: s.attempt } } }, true);
  }
}
