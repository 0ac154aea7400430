// JobService for clients: submit, list, get, cancel and watch jobs; list workers. (Blob transfers,
// also part of JobService, are blobs.ts.)
import { ChorusError, truncate } from '../../shared/errors.ts';
import { Job, WorkerInfo, type JobEvent, type JobServiceServer } from '../../shared/gen/chorus/v1/jobs.ts';
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
    artifactSha256: job.artifactSha256 ?? {},
  };
}

/** Pages of at most this many entries, and of about this many bytes (one large entry still fits). */
const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;
const PAGE_BYTES = 4 << 20;

/**
 * One page of `items` (already in list order) after the entry whose key is `token`; the token of
 * the next page is the last key on this one.
 */
function page<T, P>(
  items: T[],
  key: (t: T) => string,
  req: { pageSize: number; pageToken: string },
  toProto: (t: T) => P,
  bytes: (p: P) => number,
): { items: P[]; next: string } {
  if (!Number.isInteger(req.pageSize) || req.pageSize < 0)
    throw new ChorusError(`page_size: must be a whole number >= 0 (got ${req.pageSize})`);
  const size = Math.min(req.pageSize || PAGE_DEFAULT, PAGE_MAX);
  let start = 0;
  if (req.pageToken) {
    const at = items.findIndex((t) => key(t) === req.pageToken);
    if (at < 0) throw new ChorusError('page_token: not a token this list handed out');
    start = at + 1;
  }
  const out: P[] = [];
  let total = 0;
  let i = start;
  for (; i < items.length && out.length < size; i++) {
    const p = toProto(items[i]);
    total += bytes(p);
    if (out.length > 0 && total > PAGE_BYTES) break;
    out.push(p);
  }
  return { items: out, next: i < items.length ? key(items[i - 1]) : '' };
}

export function jobHandlers(
  coord: Coordinator,
  auth: Authenticator,
): Pick<JobServiceServer, 'submitJob' | 'getJob' | 'listJobs' | 'cancelJob' | 'listWorkers' | 'watchJob'> {
  return {
    submitJob: unary(auth, ['client'], async (req) => {
      const job = await coord.jobs.submit(req.spec, req.name, req.model);
      return { jobId: job.id, state: job.state };
    }),
    getJob: unary(auth, ['client'], (req) => jobToProto(coord.jobs.get(req.jobId))),
    listJobs: unary(auth, ['client'], (req) => {
      const jobs = [...coord.state.jobs.values()].sort((a, b) => a.createdMs - b.createdMs || (a.id < b.id ? -1 : 1));
      const { items, next } = page(
        jobs,
        (j) => j.id,
        req,
        jobToProto,
        (j) => Job.encode(j).finish().length,
      );
      return { jobs: items, nextPageToken: next };
    }),
    cancelJob: unary(auth, ['client'], async (req) =>
      // The reason is stored with the job: keep it small enough to persist.
      jobToProto(await coord.jobs.cancel(req.jobId, truncate(req.reason, 500) || 'cancelled by user')),
    ),
    listWorkers: unary(auth, ['client'], (req) => {
      const workers = coord.listWorkers().sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
      const toProto = ({ record, shards }: (typeof workers)[number]): WorkerInfo => ({
        id: record.id,
        name: record.name,
        state: record.state,
        devices: record.devices,
        lastHeartbeatMs: record.lastHeartbeatMs,
        shards,
      });
      const bytes = (w: WorkerInfo) => WorkerInfo.encode(w).finish().length;
      const { items, next } = page(workers, (w) => w.record.id, req, toProto, bytes);
      return { workers: items, nextPageToken: next };
    }),
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
