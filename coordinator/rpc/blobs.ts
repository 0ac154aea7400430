// Blob transfers (JobService.UploadBlob / DownloadBlob): bulk bytes — job inputs, adapters,
// checkpoints, results — in chunks of at most 1 MiB, into and out of the JetStream object store.
// Who may write and read which objects: object-access.ts.
import * as grpc from '@grpc/grpc-js';
import type { BlobChunk, JobServiceServer } from '../../shared/gen/chorus/v1/jobs.ts';
import { sha256Hex } from '../../shared/digest.ts';
import { ChorusError, describe } from '../../shared/errors.ts';
import type { Coordinator } from '../coordinator.ts';
import { NotFound } from '../jobs.ts';
import type { Authenticator, Role } from './auth.ts';
import { checkDownload, checkUpload } from './object-access.ts';
import { statusOf, toStatus } from './status.ts';

/** Blob chunks are at most 1 MiB. */
const MAX_BLOB_CHUNK = 1 << 20;
/** An upload is buffered in memory before it enters the object store: cap it (RESOURCE_EXHAUSTED past it). */
const MAX_BLOB_BYTES = 2 ** 31;

export function blobHandlers(
  coord: Coordinator,
  auth: Authenticator,
): Pick<JobServiceServer, 'uploadBlob' | 'downloadBlob'> {
  return {
    uploadBlob: (call, cb) => {
      let role: Role | null;
      try {
        role = auth.authorize(call.metadata, ['client', 'worker']);
      } catch (err) {
        cb(toStatus(err) as grpc.ServiceError);
        return;
      }
      const parts: Buffer[] = [];
      let name = '';
      let size = 0;
      let failed = false;
      call.on('data', (chunk: BlobChunk) => {
        if (failed) return;
        if (!name) {
          name = chunk.name;
          if (!validObjectName(name)) {
            failed = true;
            cb(statusOf(grpc.status.INVALID_ARGUMENT, nameProblem(name)));
            return;
          }
          try {
            checkUpload(coord.state, role, call.metadata, name);
          } catch (err) {
            failed = true;
            cb(toStatus(err) as grpc.ServiceError);
            return;
          }
        }
        if (chunk.data.length > MAX_BLOB_CHUNK) {
          failed = true;
          parts.length = 0;
          cb({
            code: grpc.status.INVALID_ARGUMENT,
            details: `blob chunk of ${chunk.data.length} bytes exceeds ${MAX_BLOB_CHUNK}`,
          } as grpc.ServiceError);
          return;
        }
        if (size + chunk.data.length > MAX_BLOB_BYTES) {
          failed = true;
          parts.length = 0;
          cb({
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: `blob "${name}" exceeds ${MAX_BLOB_BYTES} bytes`,
          } as grpc.ServiceError);
          return;
        }
        size += chunk.data.length;
        parts.push(Buffer.from(chunk.data));
      });
      // A client that goes away mid-upload leaves nothing buffered behind.
      call.on('cancelled', () => {
        failed = true;
        parts.length = 0;
      });
      call.on('end', () => {
        if (failed) return;
        if (!validObjectName(name)) {
          cb(statusOf(grpc.status.INVALID_ARGUMENT, nameProblem(name)));
          return;
        }
        coord.store
          .putObject(name, Buffer.concat(parts, size))
          .then((info) => cb(null, info))
          .catch((err) => cb(toStatus(err) as grpc.ServiceError));
      });
    },
    downloadBlob: (call) => {
      void (async () => {
        try {
          const role = auth.authorize(call.metadata, ['client', 'worker']);
          if (!validObjectName(call.request.name)) throw new ChorusError(nameProblem(call.request.name));
          checkDownload(coord.state, role, call.metadata, call.request.name);
          const data = await coord.store.getObject(call.request.name);
          if (!data) throw new NotFound(`no object named "${call.request.name}"`);
          for (let off = 0; off < data.length || off === 0; off += MAX_BLOB_CHUNK) {
            const piece = data.subarray(off, off + MAX_BLOB_CHUNK);
            const ok = call.write({
              name: off === 0 ? call.request.name : '',
              size: off === 0 ? data.length : 0,
              data: Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength),
              sha256: off === 0 ? sha256Hex(data) : '',
            });
            if (!ok)
              await new Promise<void>((r) => {
                call.once('drain', r);
                call.once('cancelled', r);
              });
            if (data.length === 0) break;
          }
          call.end();
        } catch (err) {
          call.emit('error', toStatus(err));
        }
      })();
    },
  };
}

/**
 * Object names: printable ASCII without spaces or backslashes, under 512 characters, '/'-separated
 * parts that are neither empty, "." nor "..". The store's own name rules then never fail as INTERNAL.
 */
export function validObjectName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length < 512 &&
    /^[\x21-\x7e]+$/.test(name) &&
    !name.includes('\\') &&
    !name.split('/').some((p) => p === '' || p === '.' || p === '..')
  );
}

function nameProblem(name: string): string {
  return name === ''
    ? 'blob name: must not be empty'
    : `blob name: ${describe(name, 80)} is not a valid object name (printable ASCII, no spaces, no empty, "." or ".." parts, under 512 characters)`;
}
