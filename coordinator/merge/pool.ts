// The coordinator's merge threads (one by default: merges are rare and a round waits on its own).
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { MergeTask } from './task.ts';

let pool: Piscina | null = null;

export async function runMerge(task: MergeTask): Promise<Uint8Array> {
  pool ??= new Piscina({
    filename: fileURLToPath(new URL('./thread.mjs', import.meta.url)),
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 30_000,
  });
  try {
    return await pool.run(task);
  } catch (err) {
    // Errors cross the thread as plain Errors: keep the message (it names the module and shapes).
    throw new Error((err as Error).message);
  }
}

export async function closeMergePool(): Promise<void> {
  await pool?.destroy();
  pool = null;
}
