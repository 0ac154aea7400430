// Identity and integrity on a live cluster. Reproducers: a process with the worker token registered
// under a live worker's id, got its stream (and would have got its shard and plan) and cancelled its
// running shard; any worker-token holder could overwrite a job's report; clients downloaded results
// without a digest check; `chorus jobs` fetched every job in one message. Now a worker id is bound
// to the secret issued at its first registration, a worker writes only its shards' objects, results
// carry the SHA-256 the coordinator recorded, and lists come in pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { NatsStore } from '../../coordinator/nats-store.ts';
import { ChorusClient, ChorusRpcError, WORKER_ID_HEADER, WORKER_SECRET_HEADER } from '../../shared/client/index.ts';
import { JobServiceClient, type ListJobsResponse } from '../../shared/gen/chorus/v1/jobs.ts';
import { WorkerServiceClient, type CoordinatorMessage, type Register } from '../../shared/gen/chorus/v1/worker.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];
let longJob = '';

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1);
  coord = await h.startCoordinator(prefix);
  procs.push(coord, h.startWorker(coord.address, 'legit'));
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

const spec = (steps: number) =>
  h.jobSpec(dir, {
    data: { train: join(dir, 'a.jsonl') },
    training: { steps, batch_size: 4, seq_len: 8, warmup_steps: 0, eval_every: 0, checkpoint_every: 4 },
  });

/** A raw worker stream: the registration's answer (registered, or the error that refused it) and what else came. */
async function register(value: Register): Promise<{ err: grpc.ServiceError | null; got: CoordinatorMessage[] }> {
  const rpc = new WorkerServiceClient(coord.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${h.TOKENS.worker}`);
  const call = rpc.connect(md);
  const got: CoordinatorMessage[] = [];
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    call.on('data', (m: CoordinatorMessage) => {
      got.push(m);
      if (m.kind?.$case === 'registered') setTimeout(() => resolve(null), 300);
    });
    call.on('error', resolve);
    call.write({ kind: { $case: 'register', value } });
  });
  call.cancel();
  rpc.close();
  return { err, got };
}

test('a second connection under a live worker id without its secret is refused and changes nothing', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 1);
    longJob = await c.submit(spec(5000));
    let job = await c.get(longJob);
    while (job.shards[0].step < 2) {
      await new Promise((r) => setTimeout(r, 100));
      job = await c.get(longJob);
    }
    const victim = job.shards[0].workerId;
    for (const secret of ['', 'a-guess']) {
      const { err, got } = await register({ name: 'evil', devices: [], workerId: victim, running: [], secret });
      assert.equal(err?.code, grpc.status.PERMISSION_DENIED, `secret "${secret}": ${err?.details ?? 'registered'}`);
      assert.match(err.details, new RegExp(`worker id ${victim} belongs to another worker process`));
      assert.deepEqual(got, [], 'no registration, no assignment, no plan');
    }
    const after = await c.get(longJob);
    assert.equal(after.shards[0].workerId, victim);
    assert.equal(after.shards[0].attempts, 1, 'the shard was neither cancelled nor moved');
    assert.ok(after.shards[0].step >= job.shards[0].step);
    assert.equal(after.state, 'running');
  } finally {
    c.close();
  }
});

test("a worker writes only its own shards' objects; results and other shards' objects are refused", async () => {
  // A worker identity of its own (no devices, so nothing is placed on it).
  const { err, got } = await register({ name: 'other', devices: [], workerId: 'other-1', running: [], secret: '' });
  assert.equal(err, null);
  const reg = got[0].kind;
  assert.ok(reg?.$case === 'registered');
  const bytes = new Uint8Array(10);
  const tries: { who: string; md: Record<string, string> }[] = [
    { who: 'the worker token alone', md: {} },
    { who: 'another worker', md: { [WORKER_ID_HEADER]: 'other-1', [WORKER_SECRET_HEADER]: reg.value.secret } },
  ];
  const shard = `${longJob}-t0-r0`;
  for (const { who, md } of tries) {
    const w = new ChorusClient({
      address: coord.address,
      token: h.TOKENS.worker,
      metadata: () => md,
    });
    try {
      for (const name of [objectNames.report(longJob), objectNames.checkpoint(longJob, shard)]) {
        const e = await w.uploadBlob(name, bytes).then(
          () => null,
          (x: unknown) => x,
        );
        assert.ok(e instanceof ChorusRpcError && e.code === grpc.status.PERMISSION_DENIED, `${who} wrote ${name}`);
      }
    } finally {
      w.close();
    }
  }
  const c = h.client(coord.address);
  try {
    const e = await c.downloadBlob('jobs/jnosuchjob/result/report.json').catch((x: unknown) => x);
    assert.ok(e instanceof ChorusRpcError && e.code === grpc.status.PERMISSION_DENIED, String(e));
    await c.cancel(longJob);
  } finally {
    c.close();
  }
});

test('results carry the digests the coordinator recorded: a replaced object is refused on download', async () => {
  const c = h.client(coord.address);
  try {
    const id = await c.submit(spec(2));
    assert.equal((await c.wait(id)).state, 'succeeded');
    const out = h.tmp('chorus-result-');
    assert.ok((await c.downloadResult(id, out)).length >= 3);
    // Whoever can write the store directly (not through the coordinator) replaces the report.
    const store = await NatsStore.open({ url: h.NATS_URL, prefix });
    try {
      await store.putObject(objectNames.report(id), new TextEncoder().encode('{"forged": true}'));
    } finally {
      await store.close();
    }
    await assert.rejects(
      c.downloadResult(id, h.tmp('chorus-result-')),
      /report\.json: SHA-256 [0-9a-f]{64} is not the [0-9a-f]{64} recorded when it was written/,
    );
  } finally {
    c.close();
  }
});

test('ListJobs pages: page_size entries at a time, a token to go on, a bad token refused', async () => {
  const c = h.client(coord.address);
  const rpc = new JobServiceClient(coord.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${h.TOKENS.client}`);
  const list = (pageToken: string) =>
    new Promise<ListJobsResponse>((resolve, reject) =>
      rpc.listJobs({ pageSize: 1, pageToken }, md, (e, r) => (e ? reject(e) : resolve(r))),
    );
  try {
    const all = (await c.list()).map((j) => j.id);
    assert.ok(all.length >= 2);
    const paged: string[] = [];
    let token = '';
    do {
      const res = await list(token);
      assert.equal(res.jobs.length, 1);
      paged.push(res.jobs[0].id);
      token = res.nextPageToken;
    } while (token);
    assert.deepEqual(paged, all);
    await assert.rejects(list('no-such-token'), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  } finally {
    rpc.close();
    c.close();
  }
});
