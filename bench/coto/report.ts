// The benchmark's outputs: the table (mean ± 95 % CI per probe and arm, the paired difference of each
// arm against plain LoRA, the paper's figures beside), SVG plots and the JSON of every raw score.
import { summarise } from './stats.ts';
import { lineChart } from './svg.ts';
import type { Probe, ProbeResult } from './probes.ts';

export interface ProbeOutcome {
  probe: Probe;
  result: ProbeResult;
}

const fmt = (v: number, unit: Probe['unit']) =>
  !Number.isFinite(v) ? '—' : unit === '%' ? (100 * v).toFixed(1) : unit === 's' ? v.toFixed(1) : v.toFixed(3);

function cell(xs: number[], unit: Probe['unit']): string {
  const s = summarise(xs);
  return Number.isFinite(s.ci) ? `${fmt(s.mean, unit)} ± ${fmt(s.ci, unit)}` : fmt(s.mean, unit);
}

/** Paired by seed: the arm minus the baseline, per seed; "holds"/"opposite" when the CI excludes 0. */
export function verdict(p: Probe, arm: number[], base: number[]): { diff: string; call: string } {
  const d = summarise(arm.map((x, i) => x - base[i]));
  const diff = Number.isFinite(d.ci) ? `${fmt(d.mean, p.unit)} ± ${fmt(d.ci, p.unit)}` : fmt(d.mean, p.unit);
  if (p.better === 'none') return { diff, call: '(descriptive)' };
  if (!Number.isFinite(d.ci)) return { diff, call: 'too few seeds' };
  const sign = p.better === 'higher' ? 1 : -1;
  if (d.mean * sign - d.ci > 0) return { diff, call: 'better' };
  if (d.mean * sign + d.ci < 0) return { diff, call: 'worse' };
  return { diff, call: 'cannot tell' };
}

export function table(outcomes: ProbeOutcome[], arms: string[], baseline: string): string {
  const others = arms.filter((a) => a !== baseline);
  const head = ['probe', ...arms, ...others.map((a) => `${a} − ${baseline}`), 'here', 'paper LoRA → CoTo'];
  const rows = outcomes.map(({ probe: p, result: r }) => {
    const unit = p.unit === '%' ? ' (%)' : p.unit === 's' ? ' (s)' : '';
    const v = others.map((a) => verdict(p, r.values[a], r.values[baseline]));
    return [
      `${p.name}${unit}`,
      ...arms.map((a) => cell(r.values[a], p.unit)),
      ...v.map((x) => x.diff),
      v.map((x) => x.call).join(', '),
      p.paper ? `${p.paper.lora} → ${p.paper.coto} (${p.paper.what})` : '—',
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export function lmcSvg(curves: Record<string, number[]>): string {
  return lineChart({
    title: 'Loss along the straight ΔW path between two seeds',
    xLabel: 'α  ((1−α)·ΔW_a + α·ΔW_b)',
    yLabel: 'held-out loss (mean over tasks and pairs)',
    series: Object.entries(curves).map(([name, ys]) => ({
      name,
      points: ys.map((y, i) => ({ x: Number((i / (ys.length - 1)).toFixed(1)), y })),
    })),
  });
}

/** Exact match vs layers whose adapters were pruned: 0 (all on), every other, all but every third, all. */
export function pruningSvg(points: Record<string, Array<{ x: number; values: number[] }>>): string {
  return lineChart({
    title: 'Exact match vs layers pruned',
    xLabel: 'layers whose adapter is removed',
    yLabel: 'exact match (%), mean ± 95 % CI over seeds',
    series: Object.entries(points).map(([name, pts]) => ({
      name,
      points: pts.map((p) => {
        const s = summarise(p.values.map((v) => 100 * v));
        return { x: p.x, y: s.mean, err: s.ci };
      }),
    })),
  });
}
