// Split & merge for LoRA (after MoSA, Wang et al. 2023): a module's rank r is cut into `groups`
// non-overlapping blocks of r/groups consecutive rank components (rows of A, columns of B). At each
// optimiser step `active` of them train: the forward pass uses only those blocks and the others get
// no update. After training the blocks are already one LoRA: ΔW = s·B·A = Σ_g s·B_g·A_g, so the
// saved adapter is the merged one and costs nothing extra at inference. During training the active
// groups are rescaled by groups/active (inverted dropout), so training sees the full ΔW in expectation.
// The draw is counter-based — a pure function of (seed, step) — so replicas agree without talking.
import { ChorusError } from '../errors.ts';
import { cotoUniform } from '../coto/schedule.ts';
import type { LoraSplit } from './types.ts';

/** The `active` groups (of `groups`) that train at optimiser step `step`: a uniform random subset. */
export function activeGroupsAt(split: LoraSplit, seed: number, step: number): boolean[] {
  const { groups, active } = split;
  if (!(Number.isInteger(groups) && groups >= 2 && Number.isInteger(active) && active >= 1 && active <= groups)) {
    throw new ChorusError(`lora.split: needs integers groups >= 2 and 1 <= active <= groups, got ${groups}/${active}`);
  }
  // The `active` groups with the smallest keys of a counter-based draw (ties by index).
  const keys = Array.from({ length: groups }, (_, g) => ({ g, u: cotoUniform(seed, step, g, 0x5b) }));
  keys.sort((x, y) => x.u - y.u || x.g - y.g);
  const on = new Array<boolean>(groups).fill(false);
  for (let i = 0; i < active; i++) on[keys[i].g] = true;
  return on;
}

/**
 * Per rank component of a rank-`rank` module in a training pass: groups/active when its group is on,
 * 0 otherwise. The inverted-dropout rescaling makes the expected training-time ΔW over the draws the
 * full one, which is what inference uses (without it the merged adapter would be groups/active times
 * what training saw on average: measured, it overshoots and loses the task).
 */
export function rankMask(rank: number, groupsOn: readonly boolean[]): Float32Array {
  const G = groupsOn.length;
  if (rank % G !== 0) throw new ChorusError(`lora.split: rank ${rank} is not a multiple of ${G} groups`);
  const on = groupsOn.filter(Boolean).length;
  const size = rank / G;
  return Float32Array.from({ length: rank }, (_, j) => (groupsOn[Math.floor(j / size)] ? G / on : 0));
}
