// Child processes of the demo (coordinator, workers): each in its own process group, so stopping
// one takes its runner threads and any grandchildren with it; output goes to a log file.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { ChorusError } from '../../shared/errors.ts';

export interface Managed {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

const managed: Managed[] = [];

export function startProcess(
  name: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; logDir: string; cwd: string },
): Managed {
  const log = join(opts.logDir, `${name}.log`);
  const out = createWriteStream(log);
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout!.pipe(out, { end: false });
  child.stderr!.pipe(out, { end: false });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code, signal) => {
      out.end();
      resolve(code ?? (signal ? 128 : null));
    }),
  );
  const m = { name, child, log, exited };
  managed.push(m);
  return m;
}

/** Resolves with the first stdout line matching `pattern`; rejects if the process exits first. */
export function waitForLine(m: Managed, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => finish(new ChorusError(`${m.name} did not start within ${timeoutMs / 1000} s (see ${m.log})`)),
      timeoutMs,
    );
    const onData = (b: Buffer) => {
      buf += b.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const match = pattern.exec(line);
        if (match) return finish(null, match);
      }
    };
    const onExit = (code: number | null) =>
      finish(new ChorusError(`${m.name} exited (code ${code}) before it was ready; its log: ${m.log}`));
    const finish = (err: Error | null, match?: RegExpExecArray) => {
      clearTimeout(timer);
      m.child.stdout!.off('data', onData);
      m.child.off('exit', onExit);
      if (err) reject(err);
      else resolve(match!);
    };
    m.child.stdout!.on('data', onData);
    m.child.once('exit', onExit);
  });
}

function signalGroup(m: Managed, signal: NodeJS.Signals): void {
  if (m.child.exitCode !== null || m.child.signalCode !== null) return;
  try {
    process.kill(-m.child.pid!, signal);
  } catch {
    // the group is already gone
  }
}

/** SIGTERM to every group (workers first, so they leave before the coordinator), SIGKILL after `graceMs`. */
export async function stopAll(graceMs = 5000): Promise<void> {
  const order = [...managed].reverse();
  for (const m of order) signalGroup(m, 'SIGTERM');
  const timer = setTimeout(() => order.forEach((m) => signalGroup(m, 'SIGKILL')), graceMs);
  await Promise.all(order.map((m) => m.exited));
  clearTimeout(timer);
  // Runner grandchildren share the group: make sure none outlives its parent.
  for (const m of order) signalGroup(m, 'SIGKILL');
  managed.length = 0;
}

/** Last resort on process exit: synchronous SIGKILL to every group still running. */
export function killAllSync(): void {
  for (const m of managed) {
    try {
      process.kill(-m.child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
