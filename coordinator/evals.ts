// Evaluations on workers: the Shapley estimate of each layer adapter's contribution needs the task
// adapter's loss under many layer coalitions; with training.eval_generate the first part also scores
// the whole adapter's greedy answers (exact match, edit similarity: shared/eval/score.ts). The coalitions are spread over the free devices, each
// part sent as an EvalPlan to one worker; only that worker's answer (with one loss per coalition)
// settles the request, and a worker that dies fails it. Cancelling the job cancels its requests on
// the workers (their devices are free at once), as does a worker that comes back without them.
import type { GenerationScore, WorkerMessage } from '../shared/gen/chorus/v1/worker.ts';
import { isTerminal } from '../shared/nats/events.ts';
import { objectNames } from '../shared/nats/subjects.ts';
import { evalPlanToWire } from '../shared/shard/plan.ts';
import { shapleyPlan, shapleyValues } from './shapley.ts';
import type { ClusterState } from './state.ts';
import type { JobRecord } from './types.ts';

type EvalResult = Extract<WorkerMessage['kind'], { $case: 'evalResult' }>['value'];

interface Answer {
  losses: number[];
  generation?: GenerationScore;
}

interface Pending {
  resolve: (answer: Answer) => void;
  reject: (e: Error) => void;
  workerId: string;
  jobId: string;
  count: number;
}

const BATCHES_PER_COALITION = 4;

export interface ShapleyEstimate {
  values: number[];
  /** Loss with no layer adapter and with all of them: Σ values = the gain between the two. */
  noAdapters: number;
  allAdapters: number;
  /** Greedy-generation scores of the whole adapter, when the task asks for them (training.eval_generate). */
  generation?: GenerationScore;
}

export class Evaluations {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly state: ClusterState) {}

  /**
   * Per-layer Shapley values of a finished task's adapter, evaluated on the workers' free devices;
   * `samples` permutations (coto.shapley_samples) when the task has too many layers for the exact value.
   */
  async shapley(job: JobRecord, task: string, layers: number, samples: number): Promise<ShapleyEstimate> {
    const plan = shapleyPlan(layers, samples, `${job.id}/${task}`);
    // Coalitions are independent: spread them over every free device and evaluate at once.
    const parts = Math.max(1, Math.min(this.state.freeDevices().length, plan.coalitions.length));
    const chunks = Array.from({ length: parts }, (_, i) => plan.coalitions.filter((_, k) => k % parts === i));
    // The generation scores (one pass over the eval set) ride with the first part.
    const generate = job.spec.tasks.find((t) => t.name === task)?.training.evalGenerate !== undefined;
    const results = await Promise.all(
      chunks.map((coalitions, i) => this.onWorker(job, task, coalitions, generate && i === 0)),
    );
    const losses = plan.coalitions.map((_, k) => results[k % parts].losses[Math.floor(k / parts)]);
    const lossOf = (size: number) => losses[plan.coalitions.findIndex((c) => c.length === size)];
    const generation = results[0].generation;
    return {
      values: shapleyValues(plan, losses),
      noAdapters: lossOf(0),
      allAdapters: lossOf(layers),
      ...(generation ? { generation } : {}),
    };
  }

  /** Only the greedy-generation scores of a task's adapter (no coalitions: one pass over the eval set). */
  async generation(job: JobRecord, task: string): Promise<GenerationScore> {
    const answer = await this.onWorker(job, task, [], true);
    if (!answer.generation) throw new Error('the worker sent no generation scores');
    return answer.generation;
  }

  /** Runs one evaluation plan on a free device; resolves to one loss per coalition (and generation scores). */
  private onWorker(job: JobRecord, task: string, coalitions: number[][], generate: boolean): Promise<Answer> {
    // A cancelled job's next task must not take the devices its cancel just freed.
    if (isTerminal(job.state)) return Promise.reject(new Error(`job ${job.state}`));
    const free = this.state.freeDevices()[0];
    if (!free) return Promise.reject(new Error('no free device for evaluation'));
    const w = this.state.workers.get(free.workerId)!;
    const requestId = `${job.id}-eval-${Math.random().toString(36).slice(2, 10)}`;
    w.busy.set(free.device, requestId);
    const plan = evalPlanToWire(job.specText, {
      jobId: job.id,
      task,
      adapterObject: objectNames.taskAdapter(job.id, task),
      coalitions,
      maxBatches: BATCHES_PER_COALITION,
      device: free.device,
      generate,
    });
    return new Promise<Answer>((resolve, reject) => {
      this.pending.set(requestId, {
        resolve,
        reject,
        workerId: w.record.id,
        jobId: job.id,
        count: coalitions.length,
      });
      w.link!.send({ kind: { $case: 'eval', value: { requestId, plan } } });
    }).finally(() => {
      if (w.busy.get(free.device) === requestId) w.busy.delete(free.device);
      this.state.scheduleSoon();
    });
  }

  /** An evaluation's answer, accepted only from the worker it was sent to; always settles the request. */
  result(workerId: string, r: EvalResult): void {
    const ev = this.pending.get(r.requestId);
    if (!ev || ev.workerId !== workerId) return;
    this.pending.delete(r.requestId);
    if (r.error) ev.reject(new Error(r.error));
    else if (r.losses.length !== ev.count || !r.losses.every(Number.isFinite)) {
      const got = r.losses.slice(0, 8).join(', ');
      ev.reject(
        new Error(
          `evaluation ${r.requestId}: the worker sent [${got}${r.losses.length > 8 ? ', …' : ''}] instead of ${ev.count} finite losses`,
        ),
      );
    } else ev.resolve({ losses: r.losses, ...(r.generation ? { generation: r.generation } : {}) });
  }

  /** Whether this request is one we are waiting for from this worker (it re-registered and still runs it). */
  runsOn(workerId: string, requestId: string): boolean {
    return this.pending.get(requestId)?.workerId === workerId;
  }

  /** The job was cancelled: its workers stop its evaluations now, and their devices are free. */
  cancelJob(jobId: string, reason: string): void {
    for (const [id, ev] of this.pending) {
      if (ev.jobId !== jobId) continue;
      this.pending.delete(id);
      this.state.send(ev.workerId, { kind: { $case: 'cancel', value: { shardId: id, reason } } });
      ev.reject(new Error(reason));
    }
  }

  /** The worker re-registered without this request (it restarted): it will never answer. */
  lost(workerId: string, requestId: string): void {
    const ev = this.pending.get(requestId);
    if (!ev || ev.workerId !== workerId) return;
    this.pending.delete(requestId);
    ev.reject(new Error(`the worker no longer runs evaluation ${requestId}`));
  }

  /** The worker is gone: its evaluations will never answer. */
  workerGone(workerId: string, why: string): void {
    for (const [id, ev] of this.pending) {
      if (ev.workerId !== workerId) continue;
      this.pending.delete(id);
      ev.reject(new Error(why));
    }
  }
}
