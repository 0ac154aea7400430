// The one content digest of the project: objects, uploads and manifests are named and checked by it.
import { createHash } from 'node:crypto';

/** SHA-256 of the bytes, lowercase hex. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
