// What every client subcommand shares: --coordinator/--token/--tls-ca flags with env defaults.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ChorusClient } from './index.ts';

export function clientOptions(cmd: Command): Command {
  return cmd
    .option('--coordinator <addr>', 'coordinator host:port (default CHORUS_COORDINATOR or 127.0.0.1:7070)')
    .option('--token <token>', 'bearer token (default CHORUS_TOKEN)')
    .option('--tls', 'connect with TLS (system roots)')
    .option('--tls-ca <file>', 'connect with TLS trusting this CA (PEM)');
}

export function clientFrom(o: { coordinator?: string; token?: string; tls?: boolean; tlsCa?: string }): ChorusClient {
  return new ChorusClient({
    address: o.coordinator,
    token: o.token,
    tls: o.tlsCa ? { ca: readFileSync(o.tlsCa) } : o.tls ? true : false,
  });
}
