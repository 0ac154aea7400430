// Which objects a caller of UploadBlob / DownloadBlob may touch. Clients add job inputs under
// uploads/ and read uploads/ and the objects of jobs this coordinator knows. Workers prove who they
// are on blob calls (their id and the secret issued with it, in metadata) and may write only the
// objects of shards placed on them right now — a checkpoint, a round adapter, the final adapter —
// and read uploads/ and the objects of jobs still in progress. Results (jobs/<id>/result/…),
// merged rounds and gradient sums are written by the coordinator alone. Before, any holder of the
// worker token could overwrite any job's report, and both roles could read any object.
import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { WORKER_ID_HEADER, WORKER_SECRET_HEADER } from '../../shared/client/index.ts';
import { isTerminal } from '../../shared/nats/events.ts';
import { shardObjects } from '../../shared/shard/plan.ts';
import type { ClusterState } from '../state.ts';
import { AuthError, type Role } from './auth.ts';

function jobOf(state: ClusterState, name: string) {
  const [area, jobId] = name.split('/');
  return area === 'jobs' ? state.jobs.get(jobId ?? '') : undefined;
}

/** The worker a blob call comes from, proven by its secret. */
function callingWorker(state: ClusterState, md: grpc.Metadata): string {
  const id = String(md.get(WORKER_ID_HEADER)[0] ?? '');
  const secret = String(md.get(WORKER_SECRET_HEADER)[0] ?? '');
  const bound = state.workerSecrets.get(id);
  const got = createHash('sha256').update(secret).digest('hex');
  if (!id || !bound || got.length !== bound.length || !timingSafeEqual(Buffer.from(got), Buffer.from(bound)))
    throw new AuthError(
      grpc.status.PERMISSION_DENIED,
      `worker blob calls must carry a registered worker's id and secret (${WORKER_ID_HEADER}, ${WORKER_SECRET_HEADER})`,
    );
  return id;
}

function denied(role: Role, what: string, name: string): AuthError {
  return new AuthError(grpc.status.PERMISSION_DENIED, `a ${role} may not ${what} "${name}"`);
}

export function checkUpload(state: ClusterState, role: Role | null, md: grpc.Metadata, name: string): void {
  if (!role) return;
  if (role === 'client') {
    if (!name.startsWith('uploads/')) throw denied(role, 'upload outside uploads/:', name);
    return;
  }
  const workerId = callingWorker(state, md);
  const job = jobOf(state, name);
  const mine =
    job &&
    !isTerminal(job.state) &&
    job.shards.some((s) => {
      if (s.workerId !== workerId || (s.state !== 'assigned' && s.state !== 'running')) return false;
      const objects = shardObjects({ jobId: job.id, shardId: s.id, task: s.task, replica: s.replica });
      const round = /\/rounds\/(\d+)\/replica-/.exec(name);
      return (
        name === objects.checkpoint || name === objects.final || (round !== null && name === objects.round(+round[1]))
      );
    });
  if (!mine) throw denied(role, 'write (it is no output of a shard placed on this worker)', name);
}

export function checkDownload(state: ClusterState, role: Role | null, md: grpc.Metadata, name: string): void {
  if (!role || name.startsWith('uploads/')) {
    if (role === 'worker') callingWorker(state, md);
    return;
  }
  const job = jobOf(state, name);
  if (role === 'client') {
    if (!job) throw denied(role, 'read (no job of this coordinator owns it)', name);
    return;
  }
  callingWorker(state, md);
  if (!job || isTerminal(job.state)) throw denied(role, 'read (it belongs to no job in progress)', name);
}
