// The coordinator's HTTP side: the dashboard page, its live feed (Server-Sent Events), a JSON API
// and Prometheus metrics. It knows the cluster only through events: whatever feeds `ingest` (the
// JetStream events stream, see source.ts) is what it shows.
//   GET /                 dashboard (plain HTML + JS)
//   GET /api/jobs         job summaries        GET /api/jobs/<id>   one job: shards, curves, layers
//   GET /api/workers      workers              GET /api/events      SSE: `jobs`, `job`, `workers`
//   GET /metrics          Prometheus text      GET /healthz         "ok"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import { errorMessage } from '../../shared/errors.ts';
import { readPem } from '../../shared/client/tls.ts';
import { admit, type HttpAuth } from './access.ts';
import { ChorusMetrics } from './metrics.ts';
import { DASHBOARD_HTML } from './page.ts';
import { ClusterView, jobJson } from './views.ts';

export interface HttpServerOptions {
  /** 0 picks a free port. */
  port: number;
  host?: string;
  /** Events to show; the server reads it until it ends or the server closes. */
  events?: AsyncIterable<ChorusEvent>;
  /** How often changed jobs are pushed to SSE clients. */
  pushIntervalMs?: number;
  /** Where to report a failing event source (default: stderr). */
  onError?: (err: unknown) => void;
  /** Tokens that open it (access.ts); null or absent = open to whoever reaches the port. */
  auth?: HttpAuth | null;
  /** HTTPS with the gRPC port's files; with `ca`, clients must present a certificate it signed. */
  tls?: { cert: string; key: string; ca?: string } | null;
}

export interface HttpServerHandle {
  url: string;
  port: number;
  view: ClusterView;
  metrics: ChorusMetrics;
  /** Feeds one event (what `events` does for each item). */
  ingest(ev: ChorusEvent): void;
  close(): Promise<void>;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  const view = new ClusterView();
  const metrics = new ChorusMetrics(view);
  const clients = new Set<ServerResponse>();
  const ingest = (ev: ChorusEvent) => {
    view.ingest(ev);
    metrics.ingest(ev);
  };

  const send = (res: ServerResponse, event: string, data: unknown) =>
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  const push = setInterval(() => {
    const dirty = view.takeDirty();
    if (clients.size === 0) return;
    if (dirty.jobs.length) {
      const summaries = view.summaries();
      for (const res of clients) send(res, 'jobs', summaries);
      for (const id of dirty.jobs) {
        const job = view.jobs.get(id);
        if (job) for (const res of clients) send(res, 'job', jobJson(job));
      }
    }
    if (dirty.workers) for (const res of clients) send(res, 'workers', [...view.workers.values()]);
  }, opts.pushIntervalMs ?? 500);
  // Comments keep proxies from closing an idle feed.
  const keepAlive = setInterval(() => {
    for (const res of clients) res.write(': keep-alive\n\n');
  }, 15000);

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (!admit(req, res, url, opts.auth ?? null, !!opts.tls)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return json(res, 405, { error: `method ${req.method} not allowed` });
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(DASHBOARD_HTML);
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok\n');
    }
    if (path === '/metrics') {
      const body = await metrics.render();
      res.writeHead(200, { 'content-type': metrics.contentType });
      return res.end(body);
    }
    if (path === '/api/jobs') return json(res, 200, view.summaries());
    if (path === '/api/workers') return json(res, 200, [...view.workers.values()]);
    const m = /^\/api\/jobs\/([A-Za-z0-9_-]+)$/.exec(path);
    if (m) {
      const job = view.jobs.get(m[1]);
      return job ? json(res, 200, jobJson(job)) : json(res, 404, { error: `no job ${m[1]}` });
    }
    if (path === '/api/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      res.write('retry: 2000\n\n');
      // A new client gets the whole picture first, then only changes.
      send(res, 'jobs', view.summaries());
      for (const job of view.jobs.values()) send(res, 'job', jobJson(job));
      send(res, 'workers', [...view.workers.values()]);
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return;
    }
    json(res, 404, { error: `no route ${path}` });
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) json(res, 500, { error: errorMessage(err) });
      else res.end();
    });
  };
  const tls = opts.tls;
  const server: Server = tls
    ? createHttpsServer(
        {
          cert: readPem(tls.cert, '--tls-cert'),
          key: readPem(tls.key, '--tls-key'),
          ...(tls.ca ? { ca: readPem(tls.ca, '--tls-ca'), requestCert: true, rejectUnauthorized: true } : {}),
        },
        onRequest,
      )
    : createServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';

  let closed = false;
  const pump = opts.events
    ? (async () => {
        try {
          for await (const ev of opts.events!) {
            if (closed) break;
            ingest(ev);
          }
        } catch (err) {
          if (!closed)
            (opts.onError ?? ((e) => process.stderr.write(`chorus: dashboard event feed: ${errorMessage(e)}\n`)))(err);
        }
      })()
    : Promise.resolve();

  return {
    url: `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    view,
    metrics,
    ingest,
    async close() {
      closed = true;
      clearInterval(push);
      clearInterval(keepAlive);
      for (const res of clients) res.end();
      clients.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
      void pump;
    },
  };
}
