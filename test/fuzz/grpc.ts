// Fuzzing the coordinator's gRPC handlers over a real connection: seeded hostile specs, names, ids,
// reasons and blob names on every client call. Each call must settle within 2 s with OK or a code
// that says the input was at fault (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, or
// RESOURCE_EXHAUSTED for sizes), never INTERNAL or UNKNOWN, with a message short enough for the
// wire; and the coordinator must still answer afterwards.
import * as grpc from '@grpc/grpc-js';
import { ChorusClient, ChorusRpcError } from '../../shared/client/index.ts';
import { EVIL_PATTERNS, Rng } from './generate.ts';
import { TARGETS } from './targets.ts';

const FAULT_CODES = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.PERMISSION_DENIED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

const NAMES = [
  '',
  'é',
  'uploads/é',
  'uploads/a b',
  'uploads/../x',
  '/abs',
  'uploads/blobs/x',
  '\u0000',
  'x'.repeat(600),
];

export interface GrpcFailure {
  call: number;
  what: string;
  why: string;
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hang: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

export async function fuzzGrpc(address: string, token: string, seed: number, calls: number): Promise<GrpcFailure[]> {
  const c = new ChorusClient({ address, token });
  const failures: GrpcFailure[] = [];
  const specs = TARGETS['job-spec'];
  try {
    for (let i = 0; i < calls; i++) {
      const rng = new Rng(seed * 7919 + i);
      const id = rng.pick([...NAMES, ...EVIL_PATTERNS, 'j' + 'x'.repeat(100_000)]);
      const op = rng.int(7);
      const what = ['submit', 'get', 'cancel', 'watch', 'upload', 'download', 'list'][op];
      const call = async (): Promise<unknown> => {
        switch (op) {
          case 0: {
            const { text } = specs.make(seed, i);
            return c.submit(text!, rng.chance(0.2) ? rng.pick(NAMES) : '');
          }
          case 1:
            return c.get(id);
          case 2:
            return c.cancel(id, rng.pick(['', 'r'.repeat(100_000), 'é']));
          case 3:
            for await (const _ of c.watch(id)) void _;
            return;
          case 4:
            return c.uploadBlob(rng.pick(NAMES), new Uint8Array(rng.int(3000)));
          case 5:
            return c.downloadBlob(rng.pick(NAMES));
          default:
            return c.list();
        }
      };
      try {
        await within(call(), 2000);
      } catch (err) {
        if (!(err instanceof ChorusRpcError)) {
          failures.push({ call: i, what, why: String(err).slice(0, 300) });
        } else if (!FAULT_CODES.has(err.code)) {
          failures.push({ call: i, what, why: `code ${grpc.status[err.code]}: ${err.message.slice(0, 300)}` });
        } else if (err.message.length > 4200) {
          failures.push({ call: i, what, why: `message of ${err.message.length} characters` });
        }
      }
    }
    // Still serving.
    await within(c.list(), 5000).catch((err) => failures.push({ call: calls, what: 'list after', why: String(err) }));
  } finally {
    c.close();
  }
  return failures;
}
