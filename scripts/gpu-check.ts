// `npm run gpu-check`: what an operator runs first on a new GPU node (from a checkout, with
// @tensorflow/tfjs-node-gpu installed). It
//   1. lists the GPUs (nvidia-smi) and loads the tensorflow engine (reason printed if it cannot);
//   2. checks the forward pass (logits with a LoRA adapter) and the LoRA gradients (A and B) on that
//      engine against the float64 reference the tests use (test/model/reference.ts: an independent
//      Llama in plain loops; the gradients against its central finite differences);
//   3. runs the train benchmark (bench/train.ts) on that engine;
//   4. prints one summary. Exit 0: a GPU, the tensorflow engine on it, the checks pass. Exit 2: no GPU
//      found (the checks still run on the best CPU engine, so the script itself is known to work).
//      Exit 1: a check failed or the engine could not load on a GPU node.
// The float64 reference stays test code in test/model/: this script is run from a checkout, like the
// tests and benches; nothing the CLI or the package ships imports it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseDevices } from '../worker/devices.ts';
import { errorMessage } from '../shared/errors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface CheckResult {
  engine: string;
  forward: { maxDiff: number; scale: number; ok: boolean };
  gradients: { checked: number; worstRel: number; ok: boolean };
  gpuOps: boolean;
}

async function childChecks(engine: string): Promise<CheckResult> {
  const { initEngine, tf } = await import('../shared/tensor/engine.ts');
  const { LlamaModel } = await import('../shared/model/llama.ts');
  const { LoraRuntime } = await import('../shared/lora/runtime.ts');
  const { nextTokenLoss } = await import('../shared/model/loss.ts');
  const { refForward, refLoss, lcg } = await import('../test/model/reference.ts');
  const { makeFixture, randomAdapter, randomIds, refLoraOf } = await import('../test/model/fixture.ts');
  await initEngine(engine as 'tensorflow' | 'wasm' | 'cpu', { quiet: true });

  const fx = makeFixture(
    {
      hiddenSize: 32,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      vocabSize: 40,
      intermediateSize: 48,
    },
    11,
  );
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, ['q_proj', 'v_proj', 'down_proj'], 4, 8, 12);
  const lora = LoraRuntime.fromAdapter(model, adapter);
  const ref = refLoraOf(adapter);

  // Forward: logits with the adapter, against float64 (the tolerance of test/model/llama.test.ts).
  const ids = randomIds(fx.config.vocabSize, 2, 7, 13);
  const got = tf.tidy(() => model.forward(tf.tensor2d(ids, [2, 7], 'int32'), { lora }).dataSync() as Float32Array);
  let maxDiff = 0;
  let scale = 0;
  ids.forEach((row, b) => {
    const want = refForward(fx.ref, fx.refWeights, row, ref);
    want.forEach((logits, t) =>
      logits.forEach((r, v) => {
        scale = Math.max(scale, Math.abs(r));
        maxDiff = Math.max(maxDiff, Math.abs(got[(b * 7 + t) * fx.config.vocabSize + v] - r));
      }),
    );
  });

  // LoRA gradients against central finite differences of the float64 loss (test/lora/runtime.test.ts).
  const mask = ids.map((row) => row.map((_, t) => (t === 0 ? 0 : 1)));
  const batch = {
    inputIds: Int32Array.from(ids.flat()),
    targetMask: Float32Array.from(mask.flat()),
    batchSize: 2,
    seqLen: 7,
  };
  const named = lora.namedVariables();
  const { value, grads } = tf.variableGrads(() => nextTokenLoss(model, batch, { lora }), lora.variables());
  const rand = lcg(5);
  const h = 1e-5;
  let checked = 0;
  let worstRel = 0;
  let gradOk = true;
  for (const path of adapter.modules.keys()) {
    for (const kind of ['a', 'b'] as const) {
      const g = grads[named.get(`${path}.lora_${kind.toUpperCase()}`)!.name].dataSync();
      const target = ref.get(path)![kind];
      for (let k = 0; k < 2; k++) {
        const i = Math.floor(rand() * target.length);
        const orig = target[i];
        target[i] = orig + h;
        const up = refLoss(fx.ref, fx.refWeights, ids, mask, ref);
        target[i] = orig - h;
        const down = refLoss(fx.ref, fx.refWeights, ids, mask, ref);
        target[i] = orig;
        const fd = (up - down) / (2 * h);
        const err = Math.abs(g[i] - fd);
        if (err > 1e-3 * Math.abs(fd) + 1e-6) gradOk = false;
        worstRel = Math.max(worstRel, err / Math.max(Math.abs(fd), 1e-6));
        checked++;
      }
    }
  }
  tf.dispose([value, ...Object.values(grads)]);
  lora.dispose();
  model.dispose();
  return {
    engine: tf.getBackend(),
    forward: { maxDiff, scale, ok: scale > 0.5 && maxDiff <= 1e-4 * scale },
    gradients: { checked, worstRel, ok: gradOk && checked > 0 },
    gpuOps: false,
  };
}

/** Runs the checks in a child process: TensorFlow's device log (stderr) tells whether a GPU was used. */
function runChecks(engine: string): { result: CheckResult | null; error: string } {
  const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', engine], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, CHORUS_QUIET_BACKEND: '1', TF_CPP_MIN_LOG_LEVEL: '0' },
  });
  const line = run.stdout.split('\n').find((l) => l.startsWith('GPU_CHECK '));
  if (!line) return { result: null, error: (run.stderr || run.stdout).trim().split('\n').slice(-4).join(' | ') };
  const result = JSON.parse(line.slice('GPU_CHECK '.length)) as CheckResult;
  result.gpuOps = /Created (?:TensorFlow )?device .*(?:GPU|gpu):\d/.test(run.stderr);
  return { result, error: '' };
}

function trainBench(engine: string, steps: number): string {
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'bench/main.ts', 'train', '--engines', engine, '--steps', String(steps), '--cpu-steps', '1'],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CHORUS_QUIET_BACKEND: '1' } },
  );
  const row = run.stdout.split('\n').find((l) => l.startsWith(engine));
  return row ? row.replace(/\s+/g, ' ').trim() : `failed: ${(run.stderr || run.stdout).trim().split('\n').pop()}`;
}

async function main(): Promise<number> {
  const gpus = parseDevices('auto').filter((d) => d.kind === 'gpu');
  const lines: string[] = [];
  lines.push(
    gpus.length
      ? `GPUs:        ${gpus.map((g) => `${g.id} ${g.description} (${(g.memoryBytes / 2 ** 30).toFixed(0)} GiB)`).join('; ')}`
      : 'GPUs:        none found (nvidia-smi absent or lists no GPU)',
  );
  // The tensorflow engine first; without it (no tfjs-node-gpu here) the checks run on the best other engine.
  let checks = runChecks('tensorflow');
  let engineNote = 'tensorflow engine loaded';
  if (!checks.result) {
    engineNote = `tensorflow engine did not load: ${checks.error}`;
    const { availableBackends } = await import('../shared/tensor/engine.ts');
    const fallback = (await availableBackends()).find((b) => b !== 'tensorflow') ?? 'cpu';
    checks = runChecks(fallback);
  }
  lines.push(`Engine:      ${engineNote}`);
  const r = checks.result;
  if (!r) {
    lines.push(`Checks:      could not run: ${checks.error}`);
  } else {
    lines.push(`Checks on:   ${r.engine}${r.gpuOps ? ' (TensorFlow created a GPU device)' : ''}`);
    lines.push(
      `Forward:     ${r.forward.ok ? 'ok' : 'FAILED'} — max |engine − float64| = ${r.forward.maxDiff.toExponential(2)} (limit ${(1e-4 * r.forward.scale).toExponential(2)})`,
    );
    lines.push(
      `LoRA grads:  ${r.gradients.ok ? 'ok' : 'FAILED'} — ${r.gradients.checked} entries of A and B vs float64 finite differences, worst relative error ${r.gradients.worstRel.toExponential(2)}`,
    );
    lines.push(
      `Train bench: ${trainBench(r.engine, gpus.length ? 6 : 1)} (engine tokens/s s/step steps peakRSS GFLOP/s)`,
    );
  }
  const passed = !!r && r.forward.ok && r.gradients.ok;
  const onGpu = gpus.length > 0 && r?.engine === 'tensorflow' && r.gpuOps;
  const verdict = !passed
    ? 'FAILED: the engine disagrees with the float64 reference (see above)'
    : gpus.length === 0
      ? `no GPU found — the checks passed on ${r!.engine} (CPU); this node can run CPU workers only`
      : onGpu
        ? `GPU ready — the tensorflow engine runs on the GPU and matches the float64 reference`
        : `FAILED: ${gpus.length} GPU(s) present but the checks did not run on them (${engineNote})`;
  console.log(['gpu-check summary', ...lines.map((l) => `  ${l}`), `  Result:      ${verdict}`].join('\n'));
  return passed && onGpu ? 0 : passed && gpus.length === 0 ? 2 : 1;
}

const at = process.argv.indexOf('--child');
if (at >= 0) {
  try {
    process.stdout.write(`GPU_CHECK ${JSON.stringify(await childChecks(process.argv[at + 1]))}\n`);
  } catch (err) {
    console.error(errorMessage(err));
    process.exit(1);
  }
} else {
  process.exitCode = await main();
}
