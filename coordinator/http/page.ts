// The dashboard: one self-contained page (no build step, no external assets). It opens the SSE feed
// (/api/events) and redraws from the job views the server pushes: jobs, shards, loss and CoTo p(t)
// curves per task, and per-layer activation counts (and Shapley estimates when the job has them).
export const DASHBOARD_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Chorus</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --bg:#f7f8fb; --card:#fff; --accent:#3b6cf6; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; gap:16px; align-items:baseline; padding:12px 20px; background:#121826; color:#fff; }
  header h1 { font-size:18px; margin:0; letter-spacing:.5px; }
  header .live { font-size:12px; color:#9fb3ff; }
  main { display:grid; grid-template-columns: 300px 1fr; gap:16px; padding:16px 20px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; margin-bottom:16px; }
  .card h2 { font-size:13px; text-transform:uppercase; letter-spacing:.6px; color:var(--muted); margin:0 0 8px; }
  .job { padding:8px; border-radius:6px; cursor:pointer; border:1px solid transparent; }
  .job:hover { background:#f0f3fb; } .job.sel { border-color:var(--accent); background:#eef2ff; }
  .job .id { font-family:ui-monospace, monospace; font-size:12px; color:var(--muted); }
  .state { display:inline-block; font-size:11px; padding:1px 7px; border-radius:10px; background:#e9ecf3; }
  .state.running { background:#dbe7ff; color:#1e4fd6; } .state.succeeded { background:#d9f5e3; color:#137a3a; }
  .state.failed { background:#fde0e0; color:#b42318; } .state.queued, .state.merging { background:#fff1d6; color:#8a5a00; }
  .bar { height:5px; background:#e9ecf3; border-radius:3px; margin-top:5px; overflow:hidden; }
  .bar > div { height:100%; background:var(--accent); }
  table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
  th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); font-size:13px; }
  th { color:var(--muted); font-weight:500; }
  .charts { display:grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap:12px; }
  .charts .card { margin-bottom:0; }
  .chart h3 { font-size:13px; margin:0 0 4px; }
  svg text { font-size:10px; fill:var(--muted); }
  .empty { color:var(--muted); }
  .muted { color:var(--muted); }
</style>
</head>
<body>
<header><h1>Chorus</h1><span class="live" id="live">connecting…</span><span class="live" id="workers"></span></header>
<main>
  <section>
    <div class="card"><h2>Jobs</h2><div id="jobs" class="empty">no jobs yet</div></div>
    <div class="card"><h2>Workers</h2><div id="workerList" class="empty">none</div></div>
  </section>
  <section id="detail"><div class="card empty">Select a job.</div></section>
</main>
<script>
const jobs = new Map(); let summaries = []; let workers = []; let selected = null;
const COLORS = ['#3b6cf6', '#f2994a', '#27ae60', '#9b51e0', '#eb5757', '#2d9cdb', '#b7950b', '#555'];
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&':'&amp;', '<':'&lt;', '>':'&gt;', '"':'&quot;', "'":'&#39;' }[c]));
const num = (v, d) => (v === null || v === undefined || !isFinite(v)) ? '—' : Number(v).toFixed(d);

function renderJobs() {
  const el = document.getElementById('jobs');
  if (!summaries.length) { el.className = 'empty'; el.textContent = 'no jobs yet'; return; }
  el.className = '';
  if (!selected) selected = summaries[0].jobId;
  el.innerHTML = summaries.map((j) => '<div class="job' + (j.jobId === selected ? ' sel' : '') + '" data-id="' + esc(j.jobId) + '">' +
    '<div><b>' + esc(j.name || '(unnamed)') + '</b> <span class="state ' + esc(j.state) + '">' + esc(j.state || '?') + '</span></div>' +
    '<div class="id">' + esc(j.jobId) + ' · ' + esc(j.tasks.join(', ')) + '</div>' +
    '<div class="bar"><div style="width:' + (100 * j.progress).toFixed(1) + '%"></div></div></div>').join('');
  for (const d of el.querySelectorAll('.job')) d.onclick = () => { selected = d.dataset.id; renderJobs(); renderDetail(); };
}

function renderWorkers() {
  const el = document.getElementById('workerList');
  const alive = workers.filter((w) => w.state === 'online').length;
  document.getElementById('workers').textContent = alive + ' worker' + (alive === 1 ? '' : 's') + ' online';
  if (!workers.length) { el.className = 'empty'; el.textContent = 'none'; return; }
  el.className = '';
  el.innerHTML = '<table><tr><th>name</th><th>state</th><th>devices</th></tr>' + workers.map((w) =>
    '<tr><td>' + esc(w.name) + '</td><td><span class="state ' + (w.state === 'online' ? 'running' : 'failed') + '">' + esc(w.state) + '</span></td><td>' + esc(w.devices.join(' ')) + '</td></tr>').join('') + '</table>';
}

// A line chart of series [{label, points: [[x, y], ...]}] as inline SVG.
function lineChart(series, opts) {
  const W = 340, H = 170, L = 40, R = 8, T = 8, B = 22;
  // Losses span orders of magnitude: plot log10 when every value is positive.
  const logY = opts.log && series.every((se) => se.points.every((p) => p[1] > 0));
  if (logY) series = series.map((se) => ({ label: se.label, points: se.points.map((p) => [p[0], Math.log10(p[1])]) }));
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return '<div class="empty">no data yet</div>';
  const xmax = Math.max(1, ...pts.map((p) => p[0]));
  let ymin = opts.ymin ?? Math.min(...pts.map((p) => p[1])), ymax = opts.ymax ?? Math.max(...pts.map((p) => p[1]));
  if (ymax - ymin < 1e-9) { ymax += 0.5; ymin -= 0.5; }
  const x = (v) => L + (W - L - R) * v / xmax, y = (v) => T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin));
  let s = '<svg viewBox="0 0 ' + W + ' ' + H + '" width="100%">';
  for (let i = 0; i <= 4; i++) { const v = ymin + (ymax - ymin) * i / 4; s += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y(v) + '" y2="' + y(v) + '" stroke="#eef0f5"/><text x="' + (L - 4) + '" y="' + (y(v) + 3) + '" text-anchor="end">' + (logY ? Number(Math.pow(10, v).toPrecision(2)) : num(v, opts.digits ?? 2)) + '</text>'; }
  s += '<text x="' + (W - R) + '" y="' + (H - 6) + '" text-anchor="end">step ' + xmax + '</text><text x="' + L + '" y="' + (H - 6) + '">0</text>';
  series.forEach((se, i) => {
    const d = se.points.map((p, k) => (k ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join(' ');
    s += '<path d="' + d + '" fill="none" stroke="' + COLORS[i % COLORS.length] + '" stroke-width="1.6"/>';
    s += '<text x="' + (L + 6 + 70 * i) + '" y="' + (T + 10) + '" style="fill:' + COLORS[i % COLORS.length] + '">' + esc(se.label) + '</text>';
  });
  return s + '</svg>';
}

function barChart(values, label) {
  const W = 340, H = 120, L = 40, B = 20, T = 8;
  if (!values.length) return '';
  const max = Math.max(...values.map((v) => Math.abs(v ?? 0)), 1e-9);
  const bw = (W - L - 8) / values.length;
  let s = '<svg viewBox="0 0 ' + W + ' ' + H + '" width="100%">';
  values.forEach((v, i) => {
    const h = (H - T - B) * Math.abs(v ?? 0) / max;
    s += '<rect x="' + (L + i * bw + 2) + '" y="' + (H - B - h) + '" width="' + Math.max(1, bw - 4) + '" height="' + h + '" fill="' + ((v ?? 0) < 0 ? '#eb5757' : '#3b6cf6') + '"><title>layer ' + i + ': ' + num(v, 3) + '</title></rect>';
    if (values.length <= 32) s += '<text x="' + (L + i * bw + bw / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + i + '</text>';
  });
  s += '<text x="' + (L - 4) + '" y="' + (T + 8) + '" text-anchor="end">' + num(max, max >= 100 ? 0 : 2) + '</text>';
  return '<div class="muted">' + esc(label) + '</div>' + s + '</svg>';
}

function renderDetail() {
  const el = document.getElementById('detail');
  const job = jobs.get(selected);
  if (!job) { el.innerHTML = '<div class="card empty">Select a job.</div>'; return; }
  const shards = job.shards;
  let html = '<div class="card"><h2>Job</h2><div><b>' + esc(job.name || job.jobId) + '</b> <span class="state ' + esc(job.state) + '">' + esc(job.state) + '</span> ' +
    '<span class="muted">' + esc(job.reason) + '</span></div><div class="id muted">' + esc(job.jobId) + '</div>' +
    (job.merge ? '<div>final merge: <b>' + esc(job.merge.method) + '</b></div>' : '') +
    (job.report ? '<div class="muted">artifacts: ' + esc(job.report.artifacts.join(', ')) + '</div>' : '') + '</div>';
  html += '<div class="card"><h2>Shards</h2><table><tr><th>shard</th><th>worker</th><th>step</th><th>loss</th><th>p(t)</th><th>tok/s</th><th>status</th></tr>' +
    shards.map((s) => '<tr><td>' + esc(s.task) + '/r' + s.replica + '</td><td>' + esc(s.worker || '—') + ' <span class="muted">' + esc(s.device || '') + '</span></td><td>' +
      s.step + '/' + s.totalSteps + '</td><td>' + num(s.loss, 4) + '</td><td>' + num(s.p, 2) + '</td><td>' + num(s.tokensPerSec, 0) + '</td><td>' + esc(s.status) +
      (Object.prototype.hasOwnProperty.call(job.rounds, s.task) ? ' <span class="muted">round ' + job.rounds[s.task] + '</span>' : '') + '</td></tr>').join('') + '</table></div>';
  const tasks = job.tasks.length ? job.tasks.map((t) => t.name) : [...new Set(shards.map((s) => s.task))];
  html += '<div class="charts">';
  for (const t of tasks) {
    const mine = shards.filter((s) => s.task === t);
    html += '<div class="card chart"><h3>' + esc(t) + ' — loss (log scale)</h3>' + lineChart(mine.map((s) => ({ label: 'r' + s.replica, points: s.curve.map((c) => [c[0], c[1]]) })), { digits: 2, log: true }) + '</div>';
    html += '<div class="card chart"><h3>' + esc(t) + ' — CoTo p(t)</h3>' + lineChart(mine.slice(0, 1).map((s) => ({ label: 'p(t)', points: s.curve.map((c) => [c[0], c[2]]) })), { ymin: 0, ymax: 1 }) + '</div>';
    // One row per task: loss, p(t), layers (the layer figures arrive when the task's shards finish).
    const layers = job.layers[t];
    html += '<div class="card chart"><h3>' + esc(t) + ' — layers</h3>' + (layers
      ? barChart(layers.activationCounts, 'activation count per layer') +
        (layers.shapley ? barChart(layers.shapley, 'estimated marginal contribution (Shapley) per layer') : '') +
        (layers.generation ? '<div>exact match <b>' + num(100 * layers.generation.exactMatch, 1) + ' %</b>, edit similarity ' +
          num(layers.generation.editSimilarity, 3) + ' <span class="muted">(greedy answers to ' + layers.generation.examples + ' eval prompts)</span></div>' : '')
      : '<div class="empty">per-layer CoTo figures come when the task finishes</div>') + '</div>';
  }
  el.innerHTML = html + '</div>';
}

function connect() {
  const es = new EventSource('/api/events');
  const live = document.getElementById('live');
  es.onopen = () => { live.textContent = 'live'; };
  es.onerror = () => { live.textContent = 'reconnecting…'; };
  es.addEventListener('jobs', (e) => { live.textContent = 'live'; summaries = JSON.parse(e.data); renderJobs(); });
  es.addEventListener('job', (e) => { const j = JSON.parse(e.data); jobs.set(j.jobId, j); if (!selected) selected = j.jobId; if (j.jobId === selected) renderDetail(); });
  es.addEventListener('workers', (e) => { workers = JSON.parse(e.data); renderWorkers(); });
}
connect();
</script>
</body>
</html>
`;
