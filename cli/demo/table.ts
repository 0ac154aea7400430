// The demo's closing table: per task, exact-match accuracy of the base model, of the task's own
// adapter, and of the merged adapter.
export interface ScoreRow {
  task: string;
  description: string;
  base: number;
  adapter: number;
  merged: number | null;
  n: number;
}

const pct = (v: number | null) => (v === null ? '—' : `${(100 * v).toFixed(1)}%`);

export function formatTable(rows: ScoreRow[], mergeMethod: string | null): string {
  const head = ['task', 'rule', 'base', 'task adapter', mergeMethod ? `merged (${mergeMethod})` : 'merged'];
  const body = rows.map((r) => [r.task, r.description, pct(r.base), pct(r.adapter), pct(r.merged)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  const n = rows[0]?.n ?? 0;
  return [
    line(head),
    widths.map((w) => '─'.repeat(w)).join('  '),
    ...body.map(line),
    '',
    `exact-match accuracy on ${n} held-out examples per task (greedy decoding, the whole completion must match)`,
  ].join('\n');
}
