// Adapters from the two runner hosts (piscina thread, child process) to the runner's port.
import type { MessagePort } from 'node:worker_threads';
import type { HostToRunner, RunnerToHost } from './protocol.ts';
import { serve } from './runner.ts';

/** piscina task: { port } — the runner talks over the transferred MessagePort until it ends. */
export async function runInThread(task: { port: MessagePort }): Promise<void> {
  const { port } = task;
  // The port is not closed here: closing drops messages still in flight (the final 'done').
  // The host closes its end once it has read the runner's last message.
  await serve({
    post: (msg: RunnerToHost) => port.postMessage(msg),
    onMessage: (fn: (m: HostToRunner) => void) => port.on('message', fn),
  });
  port.unref();
}

export async function runInProcess(): Promise<void> {
  // The agent died (SIGKILL included): nothing will read our results, so leave too.
  process.on('disconnect', () => process.exit(0));
  await serve({
    post: (msg: RunnerToHost) => process.send!(msg),
    onMessage: (fn: (m: HostToRunner) => void) => process.on('message', (m) => fn(m as HostToRunner)),
  });
  process.disconnect();
}
