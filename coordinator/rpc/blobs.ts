// Blob transfers (JobService.UploadBlob / DownloadBlob): bulk bytes — job inputs, adapters,
// checkpoints, results — in chunks of at most 1 MiB, into and out of the JetStream object store.
// Who may write and read which objects: object-access.ts.
import type { JobServiceServer } from '../../shared/gen/chorus/v1/jobs.ts';
import { sha256Hex } from '../../shared/digest.ts';
import { ChorusError, describe } from '../../shared/errors.ts';
import type { Coordinator } from '../coordinator.ts';
import { NotFound } from '../jobs.ts';
import type { Authenticator } from './auth.ts';
import { checkDownload } from './object-access.ts';
import { toStatus } from './status.ts';
import { MAX_BLOB_CHUNK, uploadHandler } from './upload.ts';

export function blobHandlers(
  coord: Coordinator,
  auth: Authenticator,
): Pick<JobServiceServer, 'uploadBlob' | 'downloadBlob'> {
  return {
    uploadBlob: uploadHandler(coord, auth, validObjectName, nameProblem),
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
function validObjectName(name: string): boolean {
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
