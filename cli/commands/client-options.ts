// What every client subcommand shares: --coordinator/--token/--tls-ca flags with env defaults.
import type { Command } from 'commander';
import { ChorusClient } from '../../shared/client/index.ts';
import { clientTlsFiles } from '../../shared/client/tls.ts';

export function clientOptions(cmd: Command): Command {
  return cmd
    .option('--coordinator <addr>', 'coordinator host:port (default CHORUS_COORDINATOR or 127.0.0.1:7070)')
    .option('--token <token>', 'bearer token (default CHORUS_TOKEN)')
    .option('--tls', 'connect with TLS (system roots)')
    .option('--tls-ca <file>', 'connect with TLS trusting this CA (PEM)')
    .option('--tls-cert <file>', 'client certificate, for a coordinator that requires them (--tls-ca there)')
    .option('--tls-key <file>', 'key of --tls-cert');
}

export function clientFrom(o: {
  coordinator?: string;
  token?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}): ChorusClient {
  return new ChorusClient({
    address: o.coordinator,
    token: o.token,
    tls: clientTlsFiles(o) ?? (o.tls ? true : false),
  });
}
