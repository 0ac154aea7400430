// `npm run fuzz`: the seeded fuzz suite at full length (the test suite runs a short one).
//   npm run fuzz -- [--seed N] [--cases N] [--from I] [--target NAME]... [--grpc]
// --grpc also fuzzes the gRPC handlers of a coordinator it starts (needs NATS at NATS_URL).
// Exits 1 on any failure, printing the seed and case number that replay it.
import { parseArgs } from 'node:util';
import { formatReport, runFuzz } from './harness.ts';
import { TARGETS } from './targets.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    cases: { type: 'string', default: '2000' },
    from: { type: 'string', default: '0' },
    target: { type: 'string', multiple: true },
    grpc: { type: 'boolean', default: false },
  },
});
const targets = values.target ?? Object.keys(TARGETS);
for (const t of targets) {
  if (!(t in TARGETS)) {
    console.error(`unknown target ${t} (targets: ${Object.keys(TARGETS).join(', ')})`);
    process.exit(2);
  }
}
const started = performance.now();
const report = await runFuzz({
  targets,
  seed: Number(values.seed),
  cases: Number(values.cases),
  from: Number(values.from),
});
console.log(formatReport(report));
let failed = report.failures.length;
if (values.grpc) {
  const h = await import('../cluster/helpers.ts');
  const { fuzzGrpc } = await import('./grpc.ts');
  const prefix = h.uniquePrefix();
  const coord = await h.startCoordinator(prefix);
  try {
    const calls = Number(values.cases);
    const grpcFailures = await fuzzGrpc(coord.address, h.TOKENS.client, Number(values.seed), calls);
    console.log(`grpc: ${calls} calls, ${grpcFailures.length} failure(s)`);
    for (const f of grpcFailures) console.log(`FAIL grpc seed ${values.seed} call ${f.call} (${f.what}): ${f.why}`);
    failed += grpcFailures.length;
  } finally {
    await h.stopAll([coord]);
    await h.cleanNats(prefix);
  }
}
console.log(`${((performance.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed > 0 ? 1 : 0);
