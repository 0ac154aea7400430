// Gang admission: a queued job starts only when every one of its shards can get a device at once,
// so data-parallel replicas never wait on a shard that has nowhere to run. Jobs are considered in
// submission order; a job that does not fit does not block a later one that does (first fit), which
// keeps devices busy — at the price that a large job can wait while small ones keep arriving.
// A running job whose shard lost its worker gets that one shard placed on any free device.

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
}

export function placeShards(
  jobs: SchedJob[],
  free: FreeDevice[],
): { placements: Placement[]; waiting: Map<string, string> } {
  const pool = spreadOrder(free);
  const placements: Placement[] = [];
  const waiting = new Map<string, string>();
  // Running jobs first: their other shards are holding devices while they wait.
  const ordered = [...jobs.filter((j) => j.state === 'running'), ...jobs.filter((j) => j.state === 'queued')];
  for (const job of ordered) {
    if (job.pendingShards.length === 0) continue;
    if (job.state === 'queued' && pool.length < job.pendingShards.length) {
      waiting.set(job.id, `waiting for devices: needs ${job.pendingShards.length}, ${pool.length} free`);
      continue;
    }
    for (const shardId of job.pendingShards) {
      const d = pool.shift();
      if (!d) {
        waiting.set(job.id, `shard ${shardId} waits for a free device`);
        break;
      }
      placements.push({ shardId, workerId: d.workerId, device: d.device });
    }
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
