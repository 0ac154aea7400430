// A throwaway local cluster for benchmarks: a coordinator and workers as real `chorus` processes
// (process groups, logs in a temp dir; cli/demo/processes.ts), under a private NATS prefix that is
// deleted afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { startProcess, stopAll, waitForLine } from '../../cli/demo/processes.ts';
import { deleteNatsPrefix } from '../../coordinator/nats-store.ts';
import { ChorusClient } from '../../shared/client/index.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface BenchCluster {
  client: ChorusClient;
  stop(): Promise<void>;
}

export async function startBenchCluster(workers: number, devicesPerWorker = 1): Promise<BenchCluster> {
  const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const prefix = `bench${randomBytes(4).toString('hex')}`;
  const logDir = mkdtempSync(join(tmpdir(), 'chorus-bench-logs-'));
  const tokens = {
    CHORUS_CLIENT_TOKEN: randomBytes(16).toString('hex'),
    CHORUS_WORKER_TOKEN: randomBytes(16).toString('hex'),
  };
  const bin = join(ROOT, 'bin', 'chorus.mjs');
  const env = { ...tokens, CHORUS_BACKEND: 'wasm' };
  const coordinator = startProcess(
    'coordinator',
    [
      bin,
      'coordinator',
      '--listen',
      '127.0.0.1:0',
      '--nats',
      natsUrl,
      '--prefix',
      prefix,
      '--token-file',
      join(logDir, 'tokens.json'),
    ],
    { env, logDir, cwd: ROOT },
  );
  const address = (await waitForLine(coordinator, /^ready (\S+)/, 60_000))[1];
  for (let i = 0; i < workers; i++) {
    const args = [bin, 'worker', '--coordinator', address, '--devices', `cpu:${devicesPerWorker}`, '--name', `b${i}`];
    // The benches' models and data live in a temporary directory, or in the repository (demo/base).
    args.push('--data-root', tmpdir(), '--data-root', ROOT);
    startProcess(`worker-${i}`, args, { env, logDir, cwd: ROOT });
  }
  const client = new ChorusClient({ address, token: tokens.CHORUS_CLIENT_TOKEN });
  await client.waitForWorkers(workers, 60_000);
  return {
    client,
    async stop() {
      client.close();
      await stopAll();
      const nc = await connect({ servers: natsUrl });
      await deleteNatsPrefix(nc, prefix).finally(() => nc.close());
    },
  };
}
