// TLS files named on the command line (coordinator, worker and client commands): read once, and a
// missing or unreadable file is an error that names the flag and the file.
import { readFileSync } from 'node:fs';
import { ChorusError } from '../errors.ts';

export function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ChorusError(
      `${flag}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

export interface TlsFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** The client side's CA / certificate / key (mTLS when a certificate is given); null without any. */
export function clientTlsFiles(o: TlsFlags): { ca?: Buffer; cert?: Buffer; key?: Buffer } | null {
  if (!!o.tlsCert !== !!o.tlsKey) throw new ChorusError('--tls-cert and --tls-key go together');
  if (!o.tlsCa && !o.tlsCert) return null;
  return {
    ca: o.tlsCa ? readPem(o.tlsCa, '--tls-ca') : undefined,
    cert: o.tlsCert ? readPem(o.tlsCert, '--tls-cert') : undefined,
    key: o.tlsKey ? readPem(o.tlsKey, '--tls-key') : undefined,
  };
}
