// NATS for the demo: the server at NATS_URL (default 127.0.0.1:4222) when one answers, else a
// private `nats-server -js` on a free port with its store in a temporary directory, else a
// ChorusError that says how to install one.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect } from 'nats';
import { ChorusError } from '../../shared/errors.ts';

export const INSTALL_HINT = [
  'Chorus needs a NATS server with JetStream, and none answers at {url} nor is `nats-server` installed.',
  'Install one, then run `npm start` again:',
  '  Debian/Ubuntu:  sudo apt-get install nats-server',
  '  macOS:          brew install nats-server',
  '  Docker:         docker run -d --name nats -p 4222:4222 nats:latest -js',
  'or point NATS_URL at a server you have (it must have JetStream enabled: nats-server -js).',
].join('\n');

export interface DemoNats {
  url: string;
  /** Whether the demo started this server (and must stop it). */
  owned: boolean;
  process?: ChildProcess;
  stop(): Promise<void>;
}

/** True when a NATS server with JetStream answers at `url`. */
async function natsAnswers(url: string, timeoutMs = 1500): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, timeout: timeoutMs, reconnect: false });
    try {
      const jsm = await nc.jetstreamManager({ timeout: timeoutMs });
      await jsm.getAccountInfo();
      return true;
    } catch {
      throw new ChorusError(`the NATS server at ${url} answers but has no JetStream (start it with -js)`);
    } finally {
      await nc.close();
    }
  } catch (err) {
    if (err instanceof ChorusError) throw err;
    return false;
  }
}

/** nats-server on PATH, or in the sbin folders Debian's package uses. */
const EXTRA_NATS_DIRS = ['/usr/sbin', '/usr/local/sbin', '/opt/homebrew/bin'];

export function findNatsServer(pathEnv = process.env.PATH ?? '', extraDirs = EXTRA_NATS_DIRS): string | null {
  const dirs = [...pathEnv.split(delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    const p = join(d, 'nats-server');
    if (existsSync(p)) return p;
  }
  return null;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** True when nothing listens on 127.0.0.1:`port`. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Starts `nats-server -js` on a free loopback port with its store in a fresh temp dir. */
async function startPrivateNats(binary: string): Promise<DemoNats> {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-nats-'));
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const child = spawn(binary, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr = (stderr + b).slice(-2000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 3000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (await natsAnswers(url, 500).catch(() => false)) return { url, owned: true, process: child, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new ChorusError(`nats-server (${binary}) did not start: ${stderr.trim().split('\n').pop() ?? 'no output'}`);
}

/** The NATS the demo will use, per the rule at the top of this file. */
export async function ensureNats(
  opts: { url?: string; pathEnv?: string; extraDirs?: string[] } = {},
): Promise<DemoNats> {
  const url = opts.url ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  if (await natsAnswers(url)) return { url, owned: false, stop: async () => {} };
  const binary = findNatsServer(opts.pathEnv, opts.extraDirs);
  if (!binary) throw new ChorusError(INSTALL_HINT.replace('{url}', url));
  return startPrivateNats(binary);
}
