// WorkerService: each worker keeps one bidirectional stream open (it dials out, so it works behind
// NAT). Its messages are handled strictly in order (a step's gradients after its progress); the
// stream's end tells the coordinator the worker may be gone.
import type { CoordinatorMessage, WorkerMessage, WorkerServiceServer } from '../../shared/gen/chorus/v1/worker.ts';
import { errorMessage } from '../../shared/errors.ts';
import * as grpc from '@grpc/grpc-js';
import type { Coordinator, WorkerLink } from '../coordinator.ts';
import { WorkerRefused } from '../workers.ts';
import type { Authenticator } from './auth.ts';
import { statusOf, toStatus } from './status.ts';

export function workerHandlers(coord: Coordinator, auth: Authenticator): WorkerServiceServer {
  return {
    connect: (call) => {
      try {
        auth.authorize(call.metadata, ['worker']);
      } catch (err) {
        call.emit('error', toStatus(err));
        return;
      }
      let workerId = '';
      const link: WorkerLink = {
        send: (msg: CoordinatorMessage) => {
          if (!call.writable || call.destroyed) return;
          call.write(msg);
        },
        close: () => {
          if (!call.destroyed) call.end();
        },
      };
      const queue: WorkerMessage[] = [];
      let busy = false;
      let refused = false;
      // Messages of one worker are handled in order (a step's gradients after its progress).
      const pump = async () => {
        if (busy) return;
        busy = true;
        while (queue.length && !refused) {
          const msg = queue.shift()!;
          try {
            workerId = await coord.fromWorker(link, workerId, msg);
          } catch (err) {
            if (err instanceof WorkerRefused) {
              // Nothing of this stream is handled any more; the worker it claimed to be is untouched.
              refused = true;
              queue.length = 0;
              coord.state.log(`worker stream refused: ${err.message}`);
              call.emit('error', statusOf(grpc.status.PERMISSION_DENIED, err.message));
              break;
            }
            coord.state.log(`worker ${workerId}: ${msg.kind?.$case}: ${errorMessage(err)}`);
          }
        }
        busy = false;
      };
      call.on('data', (msg: WorkerMessage) => {
        if (refused) return;
        queue.push(msg);
        void pump();
      });
      const gone = () => {
        if (workerId) coord.disconnected(workerId, link);
      };
      call.on('end', () => {
        gone();
        if (!call.destroyed) call.end();
      });
      call.on('error', gone);
      call.on('cancelled', gone);
    },
  };
}
