// A job's life from the client's side: submitted (validated, planned, stored), cancelled, and
// finished (merging → the final merge and report → succeeded, or failed with the reason).
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { MAX_NAME_CHARS } from '../shared/job/limits.ts';
import { parseJobSpec } from '../shared/job/parse.ts';
import { isTerminal } from '../shared/nats/events.ts';
import type { Evaluations } from './evals.ts';
import { finalizeJob } from './finalize.ts';
import { newJobId, planJob } from './plan.ts';
import type { ClusterState } from './state.ts';
import type { JobRecord, ModelRecord } from './types.ts';
import { checkPlannable } from './memory-fit.ts';

export class NotFound extends ChorusError {}

export class Jobs {
  private readonly finishing = new Set<string>();

  constructor(
    private readonly state: ClusterState,
    private readonly evals: Evaluations,
  ) {}

  async submit(specText: string, name: string, model?: ModelRecord): Promise<JobRecord> {
    const { state } = this;
    if (name.length > MAX_NAME_CHARS) {
      throw new ChorusError(`name: ${name.length} characters exceeds the ${MAX_NAME_CHARS}-character limit`);
    }
    const spec = parseJobSpec(specText);
    // What no device can change (seq_len past the model's positions, …) is refused now, naming the field.
    if (model) checkPlannable(spec, model);
    const id = newJobId();
    const job = planJob(id, spec, name);
    if (model) job.model = { configJson: model.configJson, weightBytes: model.weightBytes };
    // Stored before it is acknowledged: a job the store refuses is refused, never silently lost.
    await state.saveNewJob(job);
    state.jobs.set(id, job);
    await state.publish(
      'job.submitted',
      id,
      {
        name: job.name,
        tasks: spec.tasks.map((t) => ({ name: t.name, replicas: t.replicas, steps: t.training.steps })),
        shards: job.shards.length,
      },
      `${id}.submitted`,
    );
    await state.publish(
      'job.state',
      id,
      { state: 'queued', previous: null, reason: job.reason },
      `${id}.state.new.queued`,
    );
    state.log(`job ${id} submitted: ${job.shards.length} shard(s)`);
    state.scheduleSoon();
    return job;
  }

  get(id: string): JobRecord {
    const job = this.state.jobs.get(id);
    if (!job) throw new NotFound(`no job with id "${id}"`);
    return job;
  }

  async cancel(id: string, reason: string): Promise<JobRecord> {
    const job = this.get(id);
    await this.state.endJob(job, 'cancelled', reason, reason);
    // Evaluations of a finished job (merging) run on devices too: stopped and freed the same way.
    this.evals.cancelJob(id, reason);
    return job;
  }

  /** Every shard finished: merge, report, succeed (or fail with the reason). Runs once per job at a time. */
  async finish(job: JobRecord): Promise<void> {
    const { state } = this;
    if (this.finishing.has(job.id) || isTerminal(job.state)) return;
    this.finishing.add(job.id);
    try {
      const merge = job.spec.merge;
      await state.setState(
        job,
        'merging',
        merge ? `merging task adapters (${merge.method})` : 'writing task adapters and report',
      );
      await finalizeJob(
        {
          store: state.store,
          publish: (type, jobId, data, msgId) => state.publish(type, jobId, data, msgId),
          saveJob: (j) => state.saveJob(j),
          shapley: (j, task, layers, samples) => this.evals.shapley(j, task, layers, samples),
          generation: (j, task) => this.evals.generation(j, task),
        },
        job,
      );
      if (job.state === 'merging') {
        const what = `${job.spec.tasks.length} task adapter(s)${merge ? ' and a merged adapter' : ''} ready`;
        await state.setState(job, 'succeeded', what);
      }
    } catch (err) {
      state.log(`job ${job.id}: finishing failed: ${errorMessage(err)}`);
      await state.endJob(job, 'failed', `final merge/report: ${errorMessage(err)}`, 'job failed');
    } finally {
      this.finishing.delete(job.id);
    }
  }
}
