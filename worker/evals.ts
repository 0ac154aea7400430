// Evaluations the coordinator asks for (Shapley coalitions of a finished task's adapter, and its
// generation scores when the task asks for them): a runner on the reserved device scores the adapter
// once per coalition; the answer always goes back, with the losses (and scores) or the error —
// unless the coordinator cancels the request (its job was cancelled, or a restarted coordinator
// does not know it): then the runner is stopped at once, its device freed, and nothing is sent.
import { errorMessage } from '../shared/errors.ts';
import type * as wire from '../shared/gen/chorus/v1/worker.ts';
import { evalPlanFromWire } from '../shared/shard/plan.ts';
import type { BlobTransfer } from './blobs.ts';
import type { DataRoots } from './data-roots.ts';
import type { DeviceSpec } from './devices.ts';
import { materialiseTask } from './inputs.ts';
import type { RunnerHandle, RunnerHost } from './runner/host.ts';

interface RunningEval {
  jobId: string;
  device: string;
  /** null while the adapter and inputs download. */
  handle: RunnerHandle | null;
  cancelled: boolean;
}

export class Evaluator {
  private readonly running = new Map<string, RunningEval>();

  constructor(
    private readonly opts: { devices: DeviceSpec[]; backend?: string; cacheDir: string; roots: DataRoots },
    private readonly host: RunnerHost,
    private readonly blobs: BlobTransfer,
    private readonly send: (msg: wire.WorkerMessage, important?: boolean) => void,
    private readonly log: (line: string) => void,
  ) {}

  async evaluate(req: wire.EvalRequest): Promise<void> {
    const { requestId } = req;
    const entry: RunningEval = {
      jobId: req.plan?.jobId ?? '',
      device: req.plan?.device ?? '',
      handle: null,
      cancelled: false,
    };
    this.running.set(requestId, entry);
    const reply = (losses: number[], error = '', generation?: wire.GenerationScore) => {
      if (entry.cancelled) return;
      this.send({ kind: { $case: 'evalResult', value: { requestId, losses, error, generation } } }, true);
    };
    try {
      const plan = evalPlanFromWire(req.plan!);
      const device = this.opts.devices.find((d) => d.id === plan.device) ?? this.opts.devices[0];
      entry.device = device.id;
      this.log(`worker: evaluating ${plan.coalitions.length} layer coalition(s) of ${plan.task.name} on ${device.id}`);
      const adapter = await this.blobs.download(plan.adapterObject);
      plan.task = await materialiseTask(
        plan.task,
        this.opts.cacheDir,
        (name) => this.blobs.download(name),
        this.opts.roots,
      );
      if (entry.cancelled) return;
      await new Promise<void>((resolve) => {
        const handle = this.host.start(device, (m) => {
          if (m.type === 'evalDone') reply(m.losses, '', m.generation);
          else if (m.type === 'failed') reply([], m.error);
        });
        entry.handle = handle;
        handle.send({ type: 'eval', plan, adapter, backend: this.opts.backend });
        void handle.ended.then(resolve);
      });
    } catch (err) {
      reply([], errorMessage(err));
    } finally {
      if (this.running.get(requestId) === entry) this.running.delete(requestId);
    }
  }

  /** What a (re)registration tells the coordinator is evaluated here (as running entries named by request id). */
  list(): wire.RunningShard[] {
    return [...this.running].map(([requestId, e]) => ({
      shardId: requestId,
      jobId: e.jobId,
      device: e.device,
      step: 0,
      attempt: 0,
    }));
  }

  /** The coordinator no longer wants this evaluation: its runner stops now and no answer is sent. */
  cancel(requestId: string, reason: string): boolean {
    const e = this.running.get(requestId);
    if (!e) return false;
    this.log(`worker: evaluation ${requestId} cancelled: ${reason}`);
    this.running.delete(requestId);
    e.cancelled = true;
    e.handle?.kill();
    return true;
  }

  killAll(): void {
    for (const e of this.running.values()) e.handle?.kill();
  }
}
