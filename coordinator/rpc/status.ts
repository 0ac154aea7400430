// How errors leave the coordinator as gRPC statuses: auth errors with their own codes, unknown ids
// NOT_FOUND, bad input (ChorusError: the message names the field) INVALID_ARGUMENT, a store that is
// down UNAVAILABLE, the rest INTERNAL. Every message is cut to a size that fits in HTTP/2 trailers:
// an 82 KB status message never reached the client, and its call never settled.
import * as grpc from '@grpc/grpc-js';
import { ChorusError, errorMessage, truncate, Unavailable } from '../../shared/errors.ts';
import { NotFound } from '../jobs.ts';
import { AuthError, type Authenticator, type Role } from './auth.ts';

/** grpc-message travels percent-encoded in a trailer; peers' header-list limits start at 8 KiB. */
const MAX_WIRE_MESSAGE_BYTES = 4096;

function encodedBytes(s: string): number {
  let n = 0;
  for (const b of Buffer.from(s, 'utf8')) n += b >= 0x20 && b <= 0x7e && b !== 0x25 ? 1 : 3;
  return n;
}

/** A status message that fits on the wire, whatever its length or alphabet. */
function wireMessage(message: string): string {
  let s = truncate(message, 2000);
  while (encodedBytes(s) > MAX_WIRE_MESSAGE_BYTES) s = truncate(s, Math.floor(s.length / 2));
  return s;
}

export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code =
    err instanceof AuthError
      ? err.code
      : err instanceof NotFound
        ? grpc.status.NOT_FOUND
        : err instanceof ChorusError
          ? grpc.status.INVALID_ARGUMENT
          : err instanceof Unavailable
            ? grpc.status.UNAVAILABLE
            : grpc.status.INTERNAL;
  return { code, details: wireMessage(errorMessage(err)) };
}

/** A status for a handler's own refusal (the message is cut to fit, like every other). */
export function statusOf(code: grpc.status, details: string): grpc.ServiceError {
  return { code, details: wireMessage(details) } as grpc.ServiceError;
}

/** A unary handler that authorises first and turns every error into a status. */
export function unary<Req, Res>(
  auth: Authenticator,
  roles: readonly Role[],
  fn: (req: Req) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    try {
      auth.authorize(call.metadata, roles);
    } catch (err) {
      cb(toStatus(err) as grpc.ServiceError);
      return;
    }
    Promise.resolve()
      .then(() => fn(call.request))
      .then((res) => cb(null, res))
      .catch((err) => cb(toStatus(err) as grpc.ServiceError));
  };
}
