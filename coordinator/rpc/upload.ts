// JobService.UploadBlob: chunks go into the object store as they arrive, never gathered in memory
// (four unfinished 256 MiB uploads used to take the coordinator from 169 to 1,220 MiB). A slow
// store pushes back on the sender: the call is paused while UPLOAD_QUEUE_CHUNKS chunks wait, so an
// upload holds at most that many MiB here. Each client (a worker by its id, a client by its address)
// has at most PER_CLIENT uploads in progress, the coordinator at most IN_PROGRESS; more are refused
// with RESOURCE_EXHAUSTED, so bytes in flight stay under PER_CLIENT × UPLOAD_QUEUE_CHUNKS MiB per
// client. A cancelled upload leaves no partial object.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { WORKER_ID_HEADER } from '../../shared/client/index.ts';
import type { BlobChunk, BlobInfo } from '../../shared/gen/chorus/v1/jobs.ts';
import type { Coordinator } from '../coordinator.ts';
import type { Authenticator, Role } from './auth.ts';
import { checkUpload } from './object-access.ts';
import { statusOf, toStatus } from './status.ts';

/** Blob chunks are at most 1 MiB. */
export const MAX_BLOB_CHUNK = 1 << 20;
/** The object store's limit per object (RESOURCE_EXHAUSTED past it). */
const MAX_BLOB_BYTES = 2 ** 31;
const UPLOAD_QUEUE_CHUNKS = 4;
const PER_CLIENT = 4;
const IN_PROGRESS = 64;

const active = new Map<string, number>();
let total = 0;

function uploaderOf(role: Role | null, call: grpc.ServerReadableStream<BlobChunk, BlobInfo>): string {
  if (role === 'worker') return `worker ${String(call.metadata.get(WORKER_ID_HEADER)[0] ?? '')}`;
  const peer = call.getPeer();
  return `client ${peer.slice(0, peer.lastIndexOf(':'))}`;
}

export function uploadHandler(
  coord: Coordinator,
  auth: Authenticator,
  isValidName: (name: string) => boolean,
  nameProblem: (name: string) => string,
): grpc.handleClientStreamingCall<BlobChunk, BlobInfo> {
  return (call, cb) => {
    let role: Role | null;
    try {
      role = auth.authorize(call.metadata, ['client', 'worker']);
    } catch (err) {
      cb(toStatus(err) as grpc.ServiceError);
      return;
    }
    const who = uploaderOf(role, call);
    const mine = active.get(who) ?? 0;
    if (mine >= PER_CLIENT || total >= IN_PROGRESS) {
      const why =
        mine >= PER_CLIENT
          ? `${mine} uploads from this ${who.split(' ')[0]} are in progress (at most ${PER_CLIENT} at a time)`
          : `${total} uploads are in progress on this coordinator (at most ${IN_PROGRESS})`;
      cb(statusOf(grpc.status.RESOURCE_EXHAUSTED, `${why}: finish one, then send again`));
      return;
    }
    active.set(who, mine + 1);
    total++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      total--;
      const n = (active.get(who) ?? 1) - 1;
      if (n > 0) active.set(who, n);
      else active.delete(who);
    };

    let settled = false;
    const finish = (err: grpc.ServiceError | null, info?: BlobInfo) => {
      release();
      if (settled) return;
      settled = true;
      if (err) cb(err);
      else cb(null, info);
    };
    let name = '';
    let size = 0;
    /** What the first chunk said the whole blob holds (0 = not said). */
    let declared = 0;
    const sha = createHash('sha256');
    let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
    const fail = (err: grpc.ServiceError) => {
      // The store's put sees the error, removes what it wrote, and rejects (ignored: we answer here).
      controller?.error(new Error(err.details));
      controller = null;
      finish(err);
    };

    const start = (first: string) => {
      name = first;
      if (!isValidName(name)) return fail(statusOf(grpc.status.INVALID_ARGUMENT, nameProblem(name)));
      try {
        checkUpload(coord.state, role, call.metadata, name);
      } catch (err) {
        return fail(toStatus(err) as grpc.ServiceError);
      }
      const rs = new ReadableStream<Uint8Array>(
        {
          start: (c) => void (controller = c),
          pull: () => void call.resume(),
          cancel: () => void call.resume(),
        },
        new CountQueuingStrategy({ highWaterMark: UPLOAD_QUEUE_CHUNKS }),
      );
      coord.store
        .putObjectStream(name, rs)
        .then((info) => {
          const sha256 = sha.digest('hex');
          if (info.sha256 !== sha256 || info.size !== size)
            throw new Error(`object ${name} stored as ${info.size} bytes with SHA-256 ${info.sha256}, sent ${sha256}`);
          finish(null, { name, size, sha256 });
        })
        .catch((err) => finish(toStatus(err) as grpc.ServiceError));
    };

    call.on('data', (chunk: BlobChunk) => {
      if (settled) return;
      if (!name) {
        declared = Number(chunk.size) || 0;
        start(chunk.name);
        if (settled) return;
      }
      if (chunk.data.length > MAX_BLOB_CHUNK)
        return fail(
          statusOf(grpc.status.INVALID_ARGUMENT, `blob chunk of ${chunk.data.length} bytes exceeds ${MAX_BLOB_CHUNK}`),
        );
      if (size + chunk.data.length > MAX_BLOB_BYTES)
        return fail(statusOf(grpc.status.RESOURCE_EXHAUSTED, `blob "${name}" exceeds ${MAX_BLOB_BYTES} bytes`));
      size += chunk.data.length;
      sha.update(chunk.data);
      const c = controller!;
      c.enqueue(new Uint8Array(chunk.data));
      if ((c.desiredSize ?? 1) <= 0) call.pause();
    });
    call.on('end', () => {
      if (settled) return;
      if (!name) start('');
      if (settled) return;
      if (declared > 0 && size !== declared)
        return fail(
          statusOf(grpc.status.INVALID_ARGUMENT, `upload of "${name}" ended after ${size} of ${declared} bytes`),
        );
      // A sender that cancels also ends its side of the stream, just before the cancel is seen:
      // complete the object only once that had its chance to arrive.
      setImmediate(() => {
        if (!settled && !call.cancelled) controller?.close();
      });
    });
    // A sender that goes away mid-upload: the partial object is removed, the slot freed.
    call.on('cancelled', () => {
      settled = true;
      controller?.error(new Error('upload cancelled'));
      controller = null;
      release();
    });
    call.on('error', () => {
      settled = true;
      controller?.error(new Error('upload broke'));
      controller = null;
      release();
    });
  };
}
