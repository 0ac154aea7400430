// Uploads stream into the object store (reproducer: four concurrent unfinished 256 MiB uploads took
// the coordinator from 169 to 1,220 MiB, because each was buffered whole). Here four unfinished
// uploads (each announced as 256 MiB, 48 MiB sent) pass through a real coordinator process: its
// resident memory grows by far less than the 192 MiB they carry; a fifth upload from the same client is refused while they run;
// cancelled, they leave no object behind and free their slots.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ChorusRpcError } from '../../shared/client/index.ts';
import { JobServiceClient, type BlobChunk, type BlobInfo } from '../../shared/gen/chorus/v1/jobs.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;

before(async () => {
  coord = await h.startCoordinator(prefix);
});

after(async () => {
  await h.stopAll([coord]);
  await h.cleanNats(prefix);
});

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
  return Number(kb) / 1024;
}

const MiB = 1 << 20;

test('four unfinished 256 MiB uploads: streamed, capped per client, nothing left when cancelled', async (t) => {
  const rpc = new JobServiceClient(coord.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${h.TOKENS.client}`);
  const c = h.client(coord.address);
  try {
    await c.uploadBlob('uploads/warm-up', new Uint8Array(4 * MiB));
    const before = rssMiB(coord.child.pid!);
    const chunk = Buffer.alloc(MiB, 7);
    const outcomes: Promise<grpc.ServiceError | null>[] = [];
    const calls = Array.from({ length: 4 }, (_, i) => {
      let settle: (e: grpc.ServiceError | null) => void = () => {};
      outcomes.push(new Promise((r) => (settle = r)));
      return rpc.uploadBlob(md, (e: grpc.ServiceError | null, _r?: BlobInfo) => settle(e));
    });
    // Every upload announces 256 MiB, sends 48 and never ends; each write waits for the previous to drain.
    await Promise.all(
      calls.map(async (call, i) => {
        for (let k = 0; k < 48; k++) {
          const first = k === 0;
          const msg: BlobChunk = {
            name: first ? `uploads/big-${i}` : '',
            data: chunk,
            size: first ? 256 * MiB : 0,
            sha256: '',
          };
          await new Promise<void>((resolve) => call.write(msg, () => resolve()));
        }
      }),
    );
    const during = rssMiB(coord.child.pid!);
    const fifth = await c.uploadBlob('uploads/fifth', new Uint8Array(10)).catch((e: unknown) => e);
    assert.ok(
      fifth instanceof ChorusRpcError && fifth.code === grpc.status.RESOURCE_EXHAUSTED,
      `a fifth concurrent upload: ${String(fifth)}`,
    );
    assert.match(String(fifth), /4 uploads from this client are in progress \(at most 4 at a time\)/);
    for (const call of calls) call.cancel();
    for (const e of await Promise.all(outcomes)) assert.equal(e?.code, grpc.status.CANCELLED);
    // Slots are freed and the partial objects are gone.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await c.uploadBlob('uploads/fifth', new Uint8Array(10))).size, 10);
    for (let i = 0; i < 4; i++) {
      const e = await c.downloadBlob(`uploads/big-${i}`).then(
        (b) => `${b.length} bytes`,
        (x: unknown) => x,
      );
      assert.ok(e instanceof ChorusRpcError && e.code === grpc.status.NOT_FOUND, `uploads/big-${i}: ${String(e)}`);
    }
    const grew = during - before;
    t.diagnostic(`coordinator RSS ${before.toFixed(0)} → ${during.toFixed(0)} MiB`);
    assert.ok(grew < 96, `the coordinator grew by ${grew.toFixed(0)} MiB while 192 MiB passed through`);
  } finally {
    c.close();
    rpc.close();
  }
});
