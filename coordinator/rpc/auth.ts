// Bearer tokens with two roles. Every handler calls `authorize` first: no token or an unknown one →
// UNAUTHENTICATED, a token of the other role → PERMISSION_DENIED. Tokens never appear in logs.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ChorusError } from '../../shared/errors.ts';

export type Role = 'client' | 'worker';

export interface Tokens {
  client: string;
  worker: string;
}

export class AuthError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

export class Authenticator {
  /** `null` = --insecure-no-auth: every call is allowed. */
  constructor(private readonly tokens: Tokens | null) {}

  get enabled(): boolean {
    return this.tokens !== null;
  }

  /** Throws AuthError unless the call's bearer token has one of `roles`. */
  authorize(metadata: grpc.Metadata, roles: readonly Role[]): Role | null {
    if (!this.tokens) return null;
    const header = metadata.get('authorization')[0];
    const m = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!m) throw new AuthError(grpc.status.UNAUTHENTICATED, 'missing bearer token (set CHORUS_TOKEN)');
    const role = (['client', 'worker'] as const).find((r) => same(m[1], this.tokens![r]));
    if (!role) throw new AuthError(grpc.status.UNAUTHENTICATED, 'invalid bearer token');
    if (!roles.includes(role))
      throw new AuthError(
        grpc.status.PERMISSION_DENIED,
        `a ${role} token may not call this method (needs ${roles.join(' or ')})`,
      );
    return role;
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Tokens from flags, else env (CHORUS_CLIENT_TOKEN / CHORUS_WORKER_TOKEN), else a 0600 JSON file that
 * is created with fresh random tokens on first start and reused afterwards.
 */
export function loadTokens(opts: { clientToken?: string; workerToken?: string; tokenFile: string }): {
  tokens: Tokens;
  source: string;
} {
  const client = opts.clientToken ?? process.env.CHORUS_CLIENT_TOKEN;
  const worker = opts.workerToken ?? process.env.CHORUS_WORKER_TOKEN;
  if (client && worker) return { tokens: { client, worker }, source: 'flags/environment' };
  let stored: Partial<Tokens> = {};
  if (existsSync(opts.tokenFile)) {
    // As ssh does with private keys: tokens that others can read are not secrets any more.
    if ((statSync(opts.tokenFile).mode & 0o077) !== 0) {
      throw new ChorusError(
        `token file ${opts.tokenFile} is readable by other users: chmod 600 it (or pass the tokens by flag/environment)`,
      );
    }
    try {
      stored = JSON.parse(readFileSync(opts.tokenFile, 'utf8')) as Partial<Tokens>;
    } catch {
      throw new ChorusError(`token file ${opts.tokenFile} is not valid JSON ({"client": "...", "worker": "..."})`);
    }
    for (const role of ['client', 'worker'] as const) {
      const v = (stored as Record<string, unknown> | null)?.[role];
      if (v !== undefined && (typeof v !== 'string' || v.length === 0)) {
        throw new ChorusError(`token file ${opts.tokenFile}: "${role}" must be a non-empty string`);
      }
    }
  }
  const tokens: Tokens = {
    client: client ?? stored.client ?? randomBytes(24).toString('base64url'),
    worker: worker ?? stored.worker ?? randomBytes(24).toString('base64url'),
  };
  if (tokens.client === tokens.worker)
    throw new ChorusError('the client and worker tokens must differ (roles are told apart by token)');
  if (stored.client !== tokens.client || stored.worker !== tokens.worker) {
    mkdirSync(dirname(opts.tokenFile), { recursive: true });
    writeFileSync(opts.tokenFile, JSON.stringify(tokens, null, 2) + '\n', { mode: 0o600 });
    chmodSync(opts.tokenFile, 0o600);
  }
  return { tokens, source: opts.tokenFile };
}
