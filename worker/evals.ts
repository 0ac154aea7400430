// Evaluations the coordinator asks for (Shapley coalitions of a finished task's adapter, and its
// generation scores when the task asks for them): a runner on the reserved device scores the adapter
// once per coalition; the answer always goes back, with the losses (and scores) or the error.
import { errorMessage } from '../shared/errors.ts';
import type * as wire from '../shared/gen/chorus/v1/worker.ts';
import { evalPlanFromWire } from '../shared/shard/plan.ts';
import type { BlobTransfer } from './blobs.ts';
import type { DataRoots } from './data-roots.ts';
import type { DeviceSpec } from './devices.ts';
import { materialiseTask } from './inputs.ts';
import type { RunnerHandle, RunnerHost } from './runner/host.ts';

export class Evaluator {
  private readonly running = new Map<string, RunnerHandle>();

  constructor(
    private readonly opts: { devices: DeviceSpec[]; backend?: string; cacheDir: string; roots: DataRoots },
    private readonly host: RunnerHost,
    private readonly blobs: BlobTransfer,
    private readonly send: (msg: wire.WorkerMessage, important?: boolean) => void,
    private readonly log: (line: string) => void,
  ) {}

  async evaluate(req: wire.EvalRequest): Promise<void> {
    const { requestId } = req;
    const reply = (losses: number[], error = '', generation?: wire.GenerationScore) =>
      this.send({ kind: { $case: 'evalResult', value: { requestId, losses, error, generation } } }, true);
    try {
      const plan = evalPlanFromWire(req.plan!);
      const device = this.opts.devices.find((d) => d.id === plan.device) ?? this.opts.devices[0];
      this.log(`worker: evaluating ${plan.coalitions.length} layer coalition(s) of ${plan.task.name} on ${device.id}`);
      const adapter = await this.blobs.download(plan.adapterObject);
      plan.task = await materialiseTask(
        plan.task,
        this.opts.cacheDir,
        (name) => this.blobs.download(name),
        this.opts.roots,
      );
      await new Promise<void>((resolve) => {
        const handle = this.host.start(device, (m) => {
          if (m.type === 'evalDone') reply(m.losses, '', m.generation);
          else if (m.type === 'failed') reply([], m.error);
        });
        this.running.set(requestId, handle);
        handle.send({ type: 'eval', plan, adapter, backend: this.opts.backend });
        void handle.ended.then(resolve);
      });
    } catch (err) {
      reply([], errorMessage(err));
    } finally {
      this.running.delete(requestId);
    }
  }

  killAll(): void {
    for (const handle of this.running.values()) handle.kill();
  }
}
