// JobService for clients: submit, list, get, cancel and watch jobs; list workers. (Blob transfers,
// also part of JobService, are blobs.ts.)
import type { Job, JobEvent, JobServiceServer } from '../../shared/gen/chorus/v1/jobs.ts';
import { truncate } from '../../shared/errors.ts';
import { isTerminal } from '../../shared/nats/events.ts';
import type { Coordinator } from '../coordinator.ts';
import type { JobRecord } from '../types.ts';
import type { Authenticator } from './auth.ts';
import { toStatus, unary } from './status.ts';

function jobToProto(job: JobRecord): Job {
  return {
    id: job.id,
    name: job.name,
    state: job.state,
    reason: job.reason,
    spec: job.specText,
    createdMs: job.createdMs,
    updatedMs: job.updatedMs,
    shards: job.shards.map((s) => ({
      id: s.id,
      task: s.task,
      replica: s.replica,
      replicas: s.replicas,
      state: s.state,
      workerId: s.workerId,
      device: s.device,
      step: s.step,
      totalSteps: s.totalSteps,
      loss: Number.isFinite(s.loss) ? s.loss : 0,
      attempts: s.attempts,
    })),
    artifacts: job.artifacts,
  };
}

export function jobHandlers(
  coord: Coordinator,
  auth: Authenticator,
): Pick<JobServiceServer, 'submitJob' | 'getJob' | 'listJobs' | 'cancelJob' | 'listWorkers' | 'watchJob'> {
  return {
    submitJob: unary(auth, ['client'], async (req) => {
      const job = await coord.jobs.submit(req.spec, req.name);
      return { jobId: job.id, state: job.state };
    }),
    getJob: unary(auth, ['client'], (req) => jobToProto(coord.jobs.get(req.jobId))),
    listJobs: unary(auth, ['client'], () => ({
      jobs: [...coord.state.jobs.values()].sort((a, b) => a.createdMs - b.createdMs).map(jobToProto),
    })),
    cancelJob: unary(auth, ['client'], async (req) =>
      // The reason is stored with the job: keep it small enough to persist.
      jobToProto(await coord.jobs.cancel(req.jobId, truncate(req.reason, 500) || 'cancelled by user')),
    ),
    listWorkers: unary(auth, ['client'], () => ({
      workers: coord.listWorkers().map(({ record, shards }) => ({
        id: record.id,
        name: record.name,
        state: record.state,
        devices: record.devices,
        lastHeartbeatMs: record.lastHeartbeatMs,
        shards,
      })),
    })),
    watchJob: (call) => {
      void (async () => {
        try {
          auth.authorize(call.metadata, ['client']);
          const job = coord.jobs.get(call.request.jobId);
          const ac = new AbortController();
          call.on('cancelled', () => ac.abort());
          call.on('close', () => ac.abort());
          for await (const ev of coord.store.events(coord.store.names.jobFilter(job.id), ac.signal)) {
            const out: JobEvent = {
              seq: ev.seq ?? 0,
              subject: coord.store.names.jobEvent(job.id, ev.type),
              type: ev.type,
              jobId: job.id,
              timeMs: ev.timeMs,
              data: JSON.stringify(ev.data),
            };
            if (!call.write(out))
              await new Promise<void>((r) => {
                call.once('drain', r);
                call.once('cancelled', r);
              });
            if (ac.signal.aborted) return;
            if (ev.type === 'job.state' && isTerminal(ev.data.state)) break;
          }
          call.end();
        } catch (err) {
          call.emit('error', toStatus(err));
        }
      })();
    },
  };
}
