// A small line chart as standalone SVG (no dependency): one polyline per series, optional error bars.
export interface Series {
  name: string;
  points: Array<{ x: number; y: number; err?: number }>;
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function lineChart(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  xTicks?: number[];
}): string {
  const W = 560;
  const H = 360;
  const m = { l: 64, r: 140, t: 36, b: 48 };
  const all = o.series.flatMap((s) => s.points);
  const xs = all.map((p) => p.x);
  const ys = all.flatMap((p) => [p.y - (p.err ?? 0), p.y + (p.err ?? 0)]).filter(Number.isFinite);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.08;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const Y = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.r / 2}" y="20" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(m.t + H - m.b) / 2})">${esc(o.yLabel)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = y0 + ((y1 - y0) * i) / 5;
    out.push(
      `<line x1="${m.l - 4}" y1="${Y(y)}" x2="${W - m.r}" y2="${Y(y)}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${Y(y) + 4}" text-anchor="end">${y.toPrecision(3)}</text>`,
    );
  }
  for (const x of o.xTicks ?? [...new Set(xs)])
    out.push(`<text x="${X(x)}" y="${H - m.b + 16}" text-anchor="middle">${x}</text>`);
  o.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts}"/>`);
    for (const p of s.points) {
      out.push(`<circle cx="${X(p.x)}" cy="${Y(p.y)}" r="3" fill="${c}"/>`);
      if (p.err && Number.isFinite(p.err))
        out.push(`<line x1="${X(p.x)}" y1="${Y(p.y - p.err)}" x2="${X(p.x)}" y2="${Y(p.y + p.err)}" stroke="${c}"/>`);
    }
    out.push(
      `<line x1="${W - m.r + 12}" y1="${m.t + 10 + i * 18}" x2="${W - m.r + 32}" y2="${m.t + 10 + i * 18}" stroke="${c}" stroke-width="2"/>`,
      `<text x="${W - m.r + 38}" y="${m.t + 14 + i * 18}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
