// How errors leave the coordinator as gRPC statuses: auth errors with their own codes, unknown ids
// NOT_FOUND, bad input (ChorusError: the message names the field) INVALID_ARGUMENT, the rest INTERNAL.
import * as grpc from '@grpc/grpc-js';
import { ChorusError, errorMessage } from '../../shared/errors.ts';
import { NotFound } from '../jobs.ts';
import { AuthError, type Authenticator, type Role } from './auth.ts';

export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof AuthError) return { code: err.code, details: err.message };
  if (err instanceof NotFound) return { code: grpc.status.NOT_FOUND, details: err.message };
  if (err instanceof ChorusError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  return { code: grpc.status.INTERNAL, details: errorMessage(err) };
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
