// Shapley estimates of layer adapters (coordinator/shapley.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shapleyPlan, shapleyValues } from '../../coordinator/shapley.ts';

test("Shapley: exact on an additive game equals each layer's own effect; sampling is unbiased on a game with interactions", () => {
  const effect = [0.5, -0.2, 0.1, 0.3];
  const loss = (c: number[]) => 3 - c.reduce((s, l) => s + effect[l], 0);
  const exact = shapleyPlan(4, 0, 'k');
  assert.ok(exact.exact);
  assert.equal(exact.coalitions.length, 16);
  const phi = shapleyValues(exact, exact.coalitions.map(loss));
  phi.forEach((p, l) => assert.ok(Math.abs(p - effect[l]) < 1e-12));
  // Interaction game on 8 layers: v(S) = Σ e_l + 0.4·[0∈S ∧ 1∈S]; the pair shares the bonus equally.
  const e8 = [0.1, 0.2, 0.3, 0.0, -0.1, 0.05, 0.15, 0.25];
  const loss8 = (c: number[]) => -(c.reduce((s, l) => s + e8[l], 0) + (c.includes(0) && c.includes(1) ? 0.4 : 0));
  const plan = shapleyPlan(8, 400, 'seed');
  assert.equal(plan.exact, false);
  const est = shapleyValues(plan, plan.coalitions.map(loss8));
  const truth = e8.map((x, l) => x + (l < 2 ? 0.2 : 0));
  // Efficiency holds exactly for the permutation estimator.
  assert.ok(Math.abs(est.reduce((a, b) => a + b) - truth.reduce((a, b) => a + b)) < 1e-9);
  est.forEach((p, l) => assert.ok(Math.abs(p - truth[l]) < 0.05, `layer ${l}: ${p} vs ${truth[l]}`));
});
