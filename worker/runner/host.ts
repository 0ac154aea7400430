// Where runners live: piscina worker threads on CPU-only nodes (one thread per CPU slot, the wasm
// backend), or one child process per GPU with CUDA_VISIBLE_DEVICES set (libtensorflow binds its
// devices once per process, and its native addon misbehaves in worker threads).
import { fork } from 'node:child_process';
import { MessageChannel } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { HostToRunner, RunnerToHost } from './protocol.ts';
import type { DeviceSpec } from '../devices.ts';

/** Credentials a runner never needs (it talks only to its agent): kept out of its environment. */
const SECRET_ENV = ['CHORUS_TOKEN', 'CHORUS_WORKER_TOKEN', 'CHORUS_CLIENT_TOKEN', 'NATS_TOKEN', 'NATS_PASSWORD'];

export function runnerEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of SECRET_ENV) delete out[k];
  return out;
}

const FINAL = new Set<RunnerToHost['type']>(['done', 'stopped', 'failed', 'evalDone']);

export interface RunnerHandle {
  send(msg: HostToRunner): void;
  /** Resolves when the runner has ended (normally or not). */
  readonly ended: Promise<void>;
  kill(): void;
}

export class RunnerHost {
  private pool: Piscina | null = null;

  constructor(private readonly cpuSlots: number) {
    // CPU runners share this process's BLAS (native GEMM). One BLAS thread per runner unless
    // CHORUS_BLAS_THREADS says otherwise: OpenBLAS's float32 sums depend on its thread count, so a
    // fixed count keeps a shard's bits the same on whichever worker it resumes (whatever its core
    // count), and N slots (one per core) then use the cores without N × cores threads spinning
    // against each other. The count is process-wide, so it is set before any runner starts.
    if (cpuSlots > 0 && !process.env.CHORUS_BLAS_THREADS) process.env.CHORUS_BLAS_THREADS = '1';
  }

  start(device: DeviceSpec, onMessage: (m: RunnerToHost) => void): RunnerHandle {
    return device.kind === 'gpu' ? this.startProcess(device, onMessage) : this.startThread(onMessage);
  }

  private startThread(onMessage: (m: RunnerToHost) => void): RunnerHandle {
    this.pool ??= new Piscina({
      filename: fileURLToPath(new URL('./thread.mjs', import.meta.url)),
      minThreads: 0,
      maxThreads: Math.max(1, this.cpuSlots),
      // Threads stay up between shards so the base model stays loaded.
      idleTimeout: 60_000,
      concurrentTasksPerWorker: 1,
    });
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (m: RunnerToHost) => {
      onMessage(m);
      if (FINAL.has(m.type)) port1.close();
    });
    const abort = new AbortController();
    const ended = this.pool
      .run({ port: port2 }, { transferList: [port2], signal: abort.signal })
      .catch((err: Error) => {
        if (!abort.signal.aborted) onMessage({ type: 'failed', error: `runner thread: ${err.message}` });
      })
      // Messages posted just before the task ended may still be in flight: give them a moment.
      .finally(() => setTimeout(() => port1.close(), 1000).unref());
    return {
      send: (msg) => port1.postMessage(msg),
      ended: ended.then(() => undefined),
      kill: () => abort.abort(),
    };
  }

  private startProcess(device: DeviceSpec, onMessage: (m: RunnerToHost) => void): RunnerHandle {
    const child = fork(fileURLToPath(new URL('./process.mjs', import.meta.url)), [], {
      env: { ...runnerEnv(), CUDA_VISIBLE_DEVICES: String(device.index) },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let exited = false;
    child.on('message', (m) => onMessage(m as RunnerToHost));
    const ended = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        exited = true;
        if (code !== 0 && signal !== 'SIGKILL')
          onMessage({ type: 'failed', error: `runner process on ${device.id} exited with ${signal ?? code}` });
        resolve();
      });
    });
    return {
      send: (msg) => {
        if (!exited && child.connected) child.send(msg);
      },
      ended,
      kill: () => {
        if (!exited) child.kill('SIGKILL');
      },
    };
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
    this.pool = null;
  }
}
