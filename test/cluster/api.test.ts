// The gRPC API's guards against a real coordinator process: bearer tokens and roles on every
// service, bad job specs rejected with INVALID_ARGUMENT naming the field, unknown ids NOT_FOUND,
// and the health service.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { ChorusRpcError } from '../../shared/client/index.ts';
import { WorkerServiceClient } from '../../shared/gen/chorus/v1/worker.ts';
import * as h from './helpers.ts';

let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const prefix = h.uniquePrefix();
const dir = h.tmp();

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 8, 8, 1);
  coord = await h.startCoordinator(prefix);
});

after(async () => {
  await h.stopAll([coord]);
  await h.cleanNats(prefix);
});

async function code(p: Promise<unknown>): Promise<[number, string]> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ChorusRpcError, `expected a gRPC error, got ${err}`);
    return [err.code, err.message];
  }
  assert.fail('call succeeded');
}

test('no token or a wrong token → UNAUTHENTICATED; a worker token on the client API → PERMISSION_DENIED', async () => {
  const none = h.client(coord.address, '');
  const bad = h.client(coord.address, 'not-a-token');
  const worker = h.client(coord.address, h.TOKENS.worker);
  try {
    assert.equal((await code(none.list()))[0], grpc.status.UNAUTHENTICATED);
    assert.equal((await code(bad.workers()))[0], grpc.status.UNAUTHENTICATED);
    assert.equal((await code(bad.submit('{}')))[0], grpc.status.UNAUTHENTICATED);
    assert.equal((await code(worker.list()))[0], grpc.status.PERMISSION_DENIED);
    assert.equal(
      (await code(worker.submit(h.jobSpec(dir, { data: { train: join(dir, 'a.jsonl') } }))))[0],
      grpc.status.PERMISSION_DENIED,
    );
    // The watch stream checks too.
    const [c] = await code(
      (async () => {
        for await (const _ of none.watch('x')) void _;
      })(),
    );
    assert.equal(c, grpc.status.UNAUTHENTICATED);
  } finally {
    none.close();
    bad.close();
    worker.close();
  }
});

test('a client token on the worker stream → PERMISSION_DENIED', async () => {
  const rpc = new WorkerServiceClient(coord.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${h.TOKENS.client}`);
  const call = rpc.connect(md);
  const err = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  assert.equal(err.code, grpc.status.PERMISSION_DENIED);
  rpc.close();
});

test('a worker started with a wrong token exits with a clear message', async () => {
  const w = h.chorus(['worker', '--coordinator', coord.address, '--devices', 'cpu:1', '--token', h.TOKENS.client]);
  assert.equal(await w.exited, 1);
  assert.match(w.output(), /refused this worker: .*worker token/);
});

test('bad specs → INVALID_ARGUMENT naming the field', async () => {
  const c = h.client(coord.address);
  try {
    const cases: Array<[string, RegExp]> = [
      [
        h.jobSpec(dir, { data: { train: join(dir, 'a.jsonl') }, training: { steps: 0 } }),
        /training\.steps: must be >= 1/,
      ],
      [
        h.jobSpec(dir, { tasks: [{ name: 'a', data: { train: 'x' }, replicas: 0 }] }),
        /tasks\[0\]\.replicas: must be >= 1/,
      ],
      [h.jobSpec(dir, { data: { train: 'x' }, sync: { mode: 'weights' } }), /sync\.every/],
      [h.jobSpec(dir, { data: { train: 'x' }, merge: { method: 'nope' } }), /merge\.method: must be one of/],
      [
        h.jobSpec(dir, { data: { train: 'x' }, lora: { r: 4, target_modules: ['qq_proj'] } }),
        /lora\.target_modules\[0\]/,
      ],
      ['base_model: [unclosed', /line 1/],
    ];
    for (const [spec, re] of cases) {
      const [status, message] = await code(c.submit(spec));
      assert.equal(status, grpc.status.INVALID_ARGUMENT, message);
      assert.match(message, re);
    }
    assert.equal((await code(c.get('jnope')))[0], grpc.status.NOT_FOUND);
    assert.equal((await code(c.downloadBlob('uploads/no/such/object')))[0], grpc.status.NOT_FOUND);
    // Outside uploads/ and the jobs it knows, a client may read nothing (object-access.ts).
    assert.equal((await code(c.downloadBlob('no/such/object')))[0], grpc.status.PERMISSION_DENIED);
  } finally {
    c.close();
  }
});

test('health service answers SERVING without a token', async () => {
  const { HealthClient } = await healthClient();
  const hc = new HealthClient(coord.address, grpc.credentials.createInsecure());
  const res = await new Promise<{ status: string }>((resolve, reject) =>
    hc.check({ service: 'chorus.v1.JobService' }, (e: Error | null, r: { status: string }) =>
      e ? reject(e) : resolve(r),
    ),
  );
  assert.equal(res.status, 'SERVING');
  hc.close();
});

test('blobs round-trip in chunks through the object store', async () => {
  const c = h.client(coord.address);
  try {
    const data = new Uint8Array(2.5 * (1 << 20)).map((_, i) => (i * 7) & 0xff);
    const info = await c.uploadBlob('uploads/test/blob.bin', data);
    assert.equal(info.size, data.length);
    const back = await c.downloadBlob('uploads/test/blob.bin');
    assert.equal(Buffer.compare(back, Buffer.from(data)), 0);
    // Clients write inputs only; job outputs are the workers' (and the other way round).
    assert.equal(
      (await code(c.uploadBlob('jobs/j1/result/report.json', data.subarray(0, 10))))[0],
      grpc.status.PERMISSION_DENIED,
    );
    const w = h.client(coord.address, h.TOKENS.worker);
    try {
      assert.equal((await code(w.uploadBlob('uploads/x', data.subarray(0, 10))))[0], grpc.status.PERMISSION_DENIED);
      // A worker writes only its own shards' objects, naming itself (test/cluster/integrity.test.ts).
      assert.equal(
        (await code(w.uploadBlob('jobs/j1/checkpoints/x.safetensors', data.subarray(0, 10))))[0],
        grpc.status.PERMISSION_DENIED,
      );
    } finally {
      w.close();
    }
    assert.equal(
      (await code(c.uploadBlob('uploads/../jobs/x', data.subarray(0, 10))))[0],
      grpc.status.INVALID_ARGUMENT,
    );
  } finally {
    c.close();
  }
});

async function healthClient() {
  const protoLoader = await import('@grpc/proto-loader');
  const { protoPath } = await import('grpc-health-check');
  const def = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: {
      health: {
        v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client & { check: Function } };
      };
    };
  };
  return { HealthClient: pkg.grpc.health.v1.Health };
}
