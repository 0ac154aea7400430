// HTTP for the coordinator: dashboard, SSE feed, JSON API, Prometheus metrics.
//   const http = await startHttpServer({ port: 8080, events: jetStreamEvents(nc, prefix) });
export { startHttpServer, type HttpServerHandle, type HttpServerOptions } from './server.ts';
export { jetStreamEvents, type JetStreamEvents } from './source.ts';
export { ClusterView, jobJson, summary, type JobSummary, type WorkerView } from './views.ts';
export { ChorusMetrics } from './metrics.ts';
