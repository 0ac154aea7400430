// Gang admission: a queued job starts only when every one of its shards can get a device at once,
// so data-parallel replicas never wait on a shard that has nowhere to run. Jobs are considered in
// submission order; a job that does not fit does not block a later one that does (first fit), which
// keeps devices busy — at the price that a large job can wait while small ones keep arriving.
// A running job whose shard lost its worker gets that one shard placed on any free device that fits.
// Memory: a shard goes only to a device whose memory fits its task's plan (coordinator/memory-fit.ts). Each
// shard takes the first free device that fits it (greedy, in spread order); a job whose task fits no device
// of any live worker, busy or free, waits with the plan's refusal as its reason.

export interface FreeDevice {
  workerId: string;
  device: string;
}

export interface Placement {
  shardId: string;
  workerId: string;
  device: string;
}

export interface SchedJob {
  id: string;
  /** queued: admitted only as a gang; running: pending shards are re-placed one by one. */
  state: 'queued' | 'running';
  pendingShards: string[];
  /** Why a shard cannot run on a device, or null when it can; absent: any device will do. */
  unfit?: (shardId: string, d: FreeDevice) => string | null;
}

export function placeShards(
  jobs: SchedJob[],
  free: FreeDevice[],
  /** Every device of a live worker, busy or free (default: the free ones). */
  all: FreeDevice[] = free,
): { placements: Placement[]; waiting: Map<string, string> } {
  let pool = spreadOrder(free);
  const placements: Placement[] = [];
  const waiting = new Map<string, string>();
  // Running jobs first: their other shards are holding devices while they wait.
  const ordered = [...jobs.filter((j) => j.state === 'running'), ...jobs.filter((j) => j.state === 'queued')];
  for (const job of ordered) {
    if (job.pendingShards.length === 0) continue;
    const fits = (shardId: string, d: FreeDevice) => !job.unfit || job.unfit(shardId, d) === null;
    const never = job.pendingShards.find((s) => !all.some((d) => fits(s, d)));
    if (never !== undefined && all.length > 0) {
      // Every device refused it; the first one's refusal names the estimate, its limit and what to change.
      const why = job.unfit!(never, all[0]);
      waiting.set(job.id, `no device fits shard ${never}: ${why}`);
      continue;
    }
    const taken: Placement[] = [];
    let left = pool;
    for (const shardId of job.pendingShards) {
      const i = left.findIndex((d) => fits(shardId, d));
      if (i < 0) break;
      taken.push({ shardId, workerId: left[i].workerId, device: left[i].device });
      left = [...left.slice(0, i), ...left.slice(i + 1)];
    }
    if (job.state === 'queued' && taken.length < job.pendingShards.length) {
      const what = job.unfit ? 'devices that fit' : 'devices';
      waiting.set(job.id, `waiting for ${what}: needs ${job.pendingShards.length}, ${pool.length} free`);
      continue;
    }
    if (taken.length < job.pendingShards.length) {
      waiting.set(job.id, `shard ${job.pendingShards[taken.length]} waits for a free device`);
    }
    placements.push(...taken);
    pool = left;
  }
  return { placements, waiting };
}

/** Round-robin over workers so that a gang spreads across nodes rather than filling one first. */
function spreadOrder(free: FreeDevice[]): FreeDevice[] {
  const byWorker = new Map<string, FreeDevice[]>();
  for (const d of free) {
    const list = byWorker.get(d.workerId) ?? [];
    list.push(d);
    byWorker.set(d.workerId, list);
  }
  const out: FreeDevice[] = [];
  const lists = [...byWorker.values()];
  for (let i = 0; out.length < free.length; i++) {
    for (const l of lists) if (l[i]) out.push(l[i]);
  }
  return out;
}
