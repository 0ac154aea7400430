// Modules are independent: merges, rounds and extractions run them side by side in merge threads
// (piscina), each thread with its own tensor engine, so the cores are used and the calling thread's
// event loop stays free (a coordinator keeps answering heartbeats while a round merges). Results come
// back in module order whatever order the threads finish in. threads = 1 runs here, in this thread.
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { ChorusError } from '../errors.ts';
import { activeBackend } from '../tensor/engine.ts';
import type { ModuleJob, ModuleJobResult, ThreadReply } from './module-job.ts';

const pools = new Map<number, Piscina>();

function poolOf(threads: number): Piscina {
  let pool = pools.get(threads);
  if (!pool) {
    pool = new Piscina({
      filename: fileURLToPath(new URL('./thread.mjs', import.meta.url)),
      minThreads: 0,
      maxThreads: threads,
      // Threads keep their engine and buffers between calls (a round every few steps reuses them)
      // and give them back after a minute without work.
      idleTimeout: 60_000,
    });
    pools.set(threads, pool);
  }
  return pool;
}

/** Below this many dense entries in all modules together, starting threads (~1 s each) costs more than it saves. */
const AUTO_MIN_ENTRIES = 1 << 26;

/** How many threads to use for `threads`: a number is taken as is; 'auto' is one per core when the modules are big. */
export function threadCount(threads: number | 'auto', shapes: { outFeatures: number; inFeatures: number }[]): number {
  if (threads !== 'auto') return threads;
  const entries = shapes.reduce((s, x) => s + x.outFeatures * x.inFeatures, 0);
  return entries < AUTO_MIN_ENTRIES ? 1 : Math.min(availableParallelism(), shapes.length);
}

/** Stops every merge thread (tests, and commands that are about to exit). */
export async function closeMergeThreads(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.destroy()));
}

/**
 * Runs jobs 0..count-1 on `threads` threads; `jobAt(i)` is called only when a thread is free for job i
 * (so at most `threads` jobs' inputs are held at once) and `onResult` in job order.
 */
export async function runModuleJobs(
  count: number,
  jobAt: (index: number) => ModuleJob | Promise<ModuleJob>,
  threads: number,
  onResult: (index: number, result: ModuleJobResult) => void,
): Promise<void> {
  if (threads <= 1) {
    const { runModuleJob } = await import('./module-job.ts');
    for (let i = 0; i < count; i++) onResult(i, await runModuleJob(await jobAt(i)));
    return;
  }
  const pool = poolOf(threads);
  const backend = activeBackend() ?? undefined;
  const finished = new Map<number, ModuleJobResult>();
  let next = 0;
  let reported = 0;
  // The failure of the lowest module index wins, whichever thread finished first: the same inputs
  // give the same error with any number of threads. Lanes stop taking jobs after a failure and let
  // their module in flight finish (it may be a lower index that fails too).
  const failed: { first?: { index: number; error: Error } } = {};
  const fail = (index: number, error: Error) => {
    if (!failed.first || index < failed.first.index) failed.first = { index, error };
  };
  const lane = async () => {
    while (next < count && !failed.first) {
      const i = next++;
      let reply: ThreadReply | { thrown: unknown };
      try {
        const job = await jobAt(i);
        const transferList = job.kind === 'extract' && job.handOver ? handOver(job.base, job.tuned) : undefined;
        reply = (await pool.run({ job, backend }, { transferList })) as ThreadReply;
      } catch (thrown) {
        reply = { thrown };
      }
      if (!('ok' in reply)) {
        const error =
          'thrown' in reply
            ? reply.thrown instanceof Error
              ? reply.thrown
              : new Error(String(reply.thrown))
            : reply.chorus
              ? new ChorusError(reply.error)
              : new Error(reply.error);
        fail(i, error);
        continue;
      }
      finished.set(i, reply.ok);
      for (let r = finished.get(reported); r && !failed.first; r = finished.get(reported)) {
        finished.delete(reported);
        onResult(reported++, r);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(threads, count) }, lane));
  if (failed.first) throw failed.first.error;
}

/** The buffers of arrays that own them whole (moving a shared buffer would take others' data too). */
function handOver(...arrays: Float32Array[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const a of arrays) {
    if (a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength)
      out.add(a.buffer);
  }
  return [...out];
}
