// Who may see the dashboard. Its pages, JSON and metrics show job names, failure reasons, worker
// names and losses: the same things `chorus jobs` shows a client, so the same token opens it — the
// client token, or a read-only dashboard token (`--http-token`) that opens nothing else. Scripts and
// Prometheus send `Authorization: Bearer <token>`; a browser opens `/?token=<token>` once and gets
// an HttpOnly, SameSite=Strict cookie holding a value derived from the token (not the token itself,
// so a leaked cookie opens the dashboard and no gRPC call), then is redirected to drop the token
// from the address bar. /healthz stays open (load balancers).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

const COOKIE = 'chorus_dashboard';

export interface HttpAuth {
  /** Tokens that open the dashboard. */
  tokens: string[];
}

function session(token: string): string {
  return createHash('sha256').update(`chorus-dashboard-session:${token}`).digest('hex');
}

function oneOf(value: string, accepted: string[]): boolean {
  const v = Buffer.from(value);
  return accepted.some((a) => {
    const b = Buffer.from(a);
    return b.length === v.length && timingSafeEqual(b, v);
  });
}

function cookie(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return null;
}

/**
 * true when the request may go on; otherwise the response is written (401, or the redirect that
 * sets the cookie).
 */
export function admit(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  auth: HttpAuth | null,
  tls: boolean,
): boolean {
  if (!auth || url.pathname === '/healthz') return true;
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (bearer && oneOf(bearer, auth.tokens)) return true;
  const fromCookie = cookie(req, COOKIE);
  if (fromCookie && oneOf(fromCookie, auth.tokens.map(session))) return true;
  const query = url.searchParams.get('token');
  if (query && oneOf(query, auth.tokens)) {
    url.searchParams.delete('token');
    const secure = tls ? '; Secure' : '';
    res.writeHead(303, {
      location: url.pathname + (url.search || ''),
      'set-cookie': `${COOKIE}=${session(query)}; HttpOnly; SameSite=Strict; Path=/${secure}`,
      'cache-control': 'no-store',
    });
    res.end();
    return false;
  }
  res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer' });
  res.end(
    'the dashboard needs a token: open /?token=<client or dashboard token>, or send Authorization: Bearer <token>\n',
  );
  return false;
}
