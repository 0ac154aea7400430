import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  adapterFromObjectBytes,
  adapterToObjectBytes,
  peftAdapterFromBytes,
  peftAdapterToBytes,
  readPeftAdapter,
  writePeftAdapter,
} from '../../shared/formats/peft.ts';
import { findPatternKey, isTargetModule } from '../../shared/formats/peft-patterns.ts';
import { parseSafetensors } from '../../shared/formats/safetensors.ts';
import { serializeSafetensors } from '../../shared/formats/safetensors-write.ts';
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';
import { ChorusError } from '../../shared/errors.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peft-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function mod(rank: number, inF: number, outF: number, scaling: number, seed: number): LoraModule {
  const a = new Float32Array(rank * inF).map((_, i) => Math.sin(seed + i * 0.7));
  const b = new Float32Array(outF * rank).map((_, i) => Math.cos(seed + i * 1.3));
  return { a, b, rank, inFeatures: inF, outFeatures: outF, scaling };
}

test('round trip: PEFT key names, metadata, config fields, values and scaling', () =>
  withDir(async (dir) => {
    const adapter: LoraAdapter = {
      config: {
        r: 4,
        loraAlpha: 8,
        targetModules: ['q_proj', 'v_proj'],
        loraDropout: 0.05,
        useRslora: false,
        baseModelNameOrPath: 'base/',
      },
      modules: new Map([
        ['model.layers.0.self_attn.q_proj', mod(4, 8, 8, 2, 1)],
        ['model.layers.0.self_attn.v_proj', mod(4, 8, 4, 2, 2)],
        ['model.layers.1.self_attn.q_proj', mod(4, 8, 8, 2, 3)],
        ['model.layers.1.self_attn.v_proj', mod(4, 8, 4, 2, 4)],
      ]),
    };
    await writePeftAdapter(dir, adapter);
    const st = parseSafetensors(new Uint8Array(await readFile(join(dir, 'adapter_model.safetensors'))), 'w');
    assert.deepEqual(st.metadata, { format: 'pt' });
    assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!.shape, [4, 8]);
    assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape, [4, 4]);
    assert.equal(st.tensors.size, 8);
    const cfg = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.task_type, 'CAUSAL_LM');
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.equal(cfg.bias, 'none');
    assert.equal(cfg.use_rslora, false);
    assert.equal(cfg.fan_in_fan_out, false);
    assert.equal(cfg.inference_mode, true);
    assert.equal(cfg.modules_to_save, null);
    assert.equal(cfg.base_model_name_or_path, 'base/');
    assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
    assert.deepEqual(cfg.rank_pattern, {});
    assert.deepEqual(cfg.alpha_pattern, {});

    const back = await readPeftAdapter(dir);
    assert.equal(back.config.r, 4);
    assert.equal(back.config.loraAlpha, 8);
    assert.equal(back.config.loraDropout, 0.05);
    assert.deepEqual(back.config.targetModules, ['q_proj', 'v_proj']);
    assert.deepEqual([...back.modules.keys()].sort(), [...adapter.modules.keys()].sort());
    for (const [path, m] of adapter.modules) {
      const g = back.modules.get(path)!;
      assert.deepEqual(g.a, m.a, path);
      assert.deepEqual(g.b, m.b, path);
      assert.equal(g.scaling, 2);
      assert.deepEqual([g.rank, g.inFeatures, g.outFeatures], [m.rank, m.inFeatures, m.outFeatures]);
    }
  }));

test('per-module ranks and scalings survive through rank_pattern / alpha_pattern (rsLoRA too)', () =>
  withDir(async (dir) => {
    for (const useRslora of [false, true]) {
      const adapter: LoraAdapter = {
        config: { r: 4, loraAlpha: 16, targetModules: ['q_proj', 'v_proj'], loraDropout: 0, useRslora },
        modules: new Map([
          ['model.layers.0.self_attn.q_proj', mod(4, 6, 6, useRslora ? 16 / 2 : 4, 1)],
          ['model.layers.0.self_attn.v_proj', mod(8, 6, 3, 0.75, 2)], // other rank and other alpha
          ['model.layers.10.self_attn.q_proj', mod(2, 6, 6, useRslora ? 16 / Math.sqrt(2) : 8, 3)], // other rank, same alpha
        ]),
      };
      await writePeftAdapter(dir, adapter);
      const cfg = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
      assert.deepEqual(cfg.rank_pattern, {
        'model.layers.0.self_attn.v_proj': 8,
        'model.layers.10.self_attn.q_proj': 2,
      });
      const vAlpha = useRslora ? 0.75 * Math.sqrt(8) : 6;
      assert.deepEqual(Object.keys(cfg.alpha_pattern), ['model.layers.0.self_attn.v_proj']);
      assert.ok(Math.abs(cfg.alpha_pattern['model.layers.0.self_attn.v_proj'] - vAlpha) < 1e-12);
      const back = await readPeftAdapter(dir);
      for (const [path, m] of adapter.modules) {
        assert.equal(back.modules.get(path)!.rank, m.rank, path);
        assert.ok(Math.abs(back.modules.get(path)!.scaling - m.scaling) < 1e-12, `${path} rslora=${useRslora}`);
      }
    }
  }));

/** A directory laid out exactly as PEFT's save_pretrained writes it, built key by key. */
async function writePeftStyle(
  dir: string,
  config: Record<string, unknown>,
  tensors: Array<{ name: string; shape: number[]; data: number[] }>,
  dtype: 'F16' | 'BF16' | 'F32' = 'BF16',
) {
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config));
  await writeFile(
    join(dir, 'adapter_model.safetensors'),
    serializeSafetensors(
      tensors.map((t) => ({ ...t, dtype })),
      { format: 'pt' },
    ),
  );
}

const range = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

test('reads a hand-built PEFT file (BF16, suffix rank_pattern, alpha_pattern, rsLoRA) with the right A, B and scaling', () =>
  withDir(async (dir) => {
    const P = 'base_model.model.model.layers';
    // Values k/8 are exact in BF16 and F16, so the comparison can be exact.
    const A = (r: number, inF: number, s: number) => range(r * inF, (i) => ((i + s) % 13) / 8 - 0.75);
    const B = (out: number, r: number, s: number) => range(out * r, (i) => ((i * 3 + s) % 11) / 8 - 0.5);
    const tensors = [
      { name: `${P}.0.self_attn.q_proj.lora_A.weight`, shape: [4, 6], data: A(4, 6, 0) },
      { name: `${P}.0.self_attn.q_proj.lora_B.weight`, shape: [6, 4], data: B(6, 4, 0) },
      { name: `${P}.0.self_attn.v_proj.lora_A.weight`, shape: [2, 6], data: A(2, 6, 1) },
      { name: `${P}.0.self_attn.v_proj.lora_B.weight`, shape: [3, 2], data: B(3, 2, 1) },
      { name: `${P}.1.self_attn.q_proj.lora_A.weight`, shape: [4, 6], data: A(4, 6, 2) },
      { name: `${P}.1.self_attn.q_proj.lora_B.weight`, shape: [6, 4], data: B(6, 4, 2) },
      { name: `${P}.1.self_attn.v_proj.lora_A.weight`, shape: [2, 6], data: A(2, 6, 3) },
      { name: `${P}.1.self_attn.v_proj.lora_B.weight`, shape: [3, 2], data: B(3, 2, 3) },
    ];
    for (const dtype of ['BF16', 'F16'] as const) {
      await writePeftStyle(
        dir,
        {
          peft_type: 'LORA',
          task_type: 'CAUSAL_LM',
          r: 4,
          lora_alpha: 16,
          use_rslora: true,
          lora_dropout: 0.1,
          target_modules: ['v_proj', 'q_proj'],
          bias: 'none',
          fan_in_fan_out: false,
          modules_to_save: null,
          rank_pattern: { v_proj: 2 },
          alpha_pattern: { 'layers.1.self_attn.q_proj': 32 },
          init_lora_weights: true,
          base_model_name_or_path: 'meta-llama/Llama-3.2-1B',
          inference_mode: true,
          use_dora: false,
        },
        tensors,
        dtype,
      );
      const ad = await readPeftAdapter(dir);
      assert.equal(ad.modules.size, 4);
      assert.equal(ad.config.baseModelNameOrPath, 'meta-llama/Llama-3.2-1B');
      const expectScaling: Record<string, number> = {
        'model.layers.0.self_attn.q_proj': 16 / Math.sqrt(4),
        'model.layers.0.self_attn.v_proj': 16 / Math.sqrt(2),
        'model.layers.1.self_attn.q_proj': 32 / Math.sqrt(4),
        'model.layers.1.self_attn.v_proj': 16 / Math.sqrt(2),
      };
      for (const t of tensors) {
        const m = /model\.layers\.(.*)\.lora_([AB])\.weight$/.exec(t.name)!;
        const g = ad.modules.get(`model.layers.${m[1]}`)!;
        assert.deepEqual([...(m[2] === 'A' ? g.a : g.b)], t.data, t.name);
        assert.equal(g.scaling, expectScaling[`model.layers.${m[1]}`], t.name);
      }
    }
  }));

test('PEFT pattern and target matching semantics', () => {
  const keys = ['layers.1.self_attn.q_proj', 'q_proj', 'v_pro'];
  assert.equal(findPatternKey(keys, 'model.layers.1.self_attn.q_proj', 'f'), 'layers.1.self_attn.q_proj');
  assert.equal(findPatternKey(keys, 'model.layers.11.self_attn.q_proj', 'f'), 'q_proj');
  assert.equal(findPatternKey(keys, 'model.layers.1.self_attn.xq_proj', 'f'), undefined);
  assert.equal(findPatternKey(keys, 'model.layers.1.self_attn.v_proj', 'f'), undefined);
  assert.equal(
    findPatternKey(['model.layers.1.self_attn.q_proj'], 'model.layers.1.self_attn.q_proj', 'f'),
    'model.layers.1.self_attn.q_proj',
  );
  assert.equal(findPatternKey(['.*\\.mlp\\..*'], 'model.layers.3.mlp.up_proj', 'f'), '.*\\.mlp\\..*');
  const p = 'model.layers.3.self_attn.q_proj';
  assert.ok(isTargetModule({ targetModules: ['q_proj'] }, p, 's'));
  assert.ok(!isTargetModule({ targetModules: ['proj'] }, p, 's'));
  assert.ok(isTargetModule({ targetModules: '.*\\.(q|v)_proj' }, p, 's'));
  assert.ok(!isTargetModule({ targetModules: '(q|v)_proj' }, p, 's')); // a regex must match the whole path
  assert.ok(isTargetModule({ targetModules: 'all-linear' }, p, 's'));
  assert.ok(!isTargetModule({ targetModules: 'all-linear' }, 'lm_head', 's'));
  assert.ok(isTargetModule({ targetModules: ['q_proj'], layersToTransform: [3] }, p, 's'));
  assert.ok(!isTargetModule({ targetModules: ['q_proj'], layersToTransform: 2 }, p, 's'));
  assert.ok(isTargetModule({ targetModules: ['q_proj'], layersToTransform: 3, layersPattern: 'layers' }, p, 's'));
  assert.ok(!isTargetModule({ targetModules: ['q_proj'], excludeModules: ['q_proj'] }, p, 's'));
});

test('a regex target_modules is kept verbatim and the matched names are listed', () =>
  withDir(async (dir) => {
    const P = 'base_model.model.model.layers.0';
    await writePeftStyle(dir, { peft_type: 'LORA', r: 1, lora_alpha: 2, target_modules: '.*\\.(up_proj|q_proj)' }, [
      { name: `${P}.mlp.up_proj.lora_A.weight`, shape: [1, 2], data: [1, 2] },
      { name: `${P}.mlp.up_proj.lora_B.weight`, shape: [3, 1], data: [1, 2, 3] },
      { name: `${P}.self_attn.q_proj.lora_A.weight`, shape: [1, 2], data: [1, 2] },
      { name: `${P}.self_attn.q_proj.lora_B.weight`, shape: [2, 1], data: [1, 2] },
    ]);
    const ad = await readPeftAdapter(dir);
    assert.deepEqual(ad.config.targetModules, ['q_proj', 'up_proj']);
    assert.equal(ad.config.targetModulesRegex, '.*\\.(up_proj|q_proj)');
    assert.equal(ad.modules.get('model.layers.0.mlp.up_proj')!.scaling, 2);
    const out = join(dir, 'out');
    await writePeftAdapter(out, ad);
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.target_modules, '.*\\.(up_proj|q_proj)');
  }));

test('errors name the module, key or file', () =>
  withDir(async (dir) => {
    const P = 'base_model.model.model.layers.0.self_attn';
    const cfg = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] };
    const expectError = async (re: RegExp) =>
      assert.rejects(readPeftAdapter(dir), (e: Error) => {
        assert.ok(e instanceof ChorusError, String(e));
        assert.match(e.message, re);
        return true;
      });
    await writePeftStyle(dir, cfg, [
      { name: `${P}.q_proj.lora_A.weight`, shape: [2, 3], data: range(6, (i) => i) },
      { name: `${P}.q_proj.lora_B.weight`, shape: [3, 3], data: range(9, (i) => i) },
    ]);
    await expectError(
      /module "model.layers.0.self_attn.q_proj": mismatched ranks, lora_A is \[2,3\] \(rank 2\) but lora_B is \[3,3\] \(rank 3\)/,
    );
    await writePeftStyle(dir, cfg, [{ name: `${P}.q_proj.lora_A.weight`, shape: [2, 3], data: range(6, (i) => i) }]);
    await expectError(/module "model.layers.0.self_attn.q_proj" has lora_A but no lora_B/);
    await writePeftStyle(dir, cfg, [
      { name: `${P}.q_proj.lora_A.default.weight`, shape: [2, 3], data: range(6, (i) => i) },
      { name: `${P}.q_proj.lora_B.default.weight`, shape: [3, 2], data: range(6, (i) => i) },
    ]);
    await expectError(/carries the adapter name "default"/);
    await writePeftStyle(dir, cfg, [
      { name: `${P}.k_proj.lora_A.weight`, shape: [2, 3], data: range(6, (i) => i) },
      { name: `${P}.k_proj.lora_B.weight`, shape: [3, 2], data: range(6, (i) => i) },
    ]);
    await expectError(/module "model.layers.0.self_attn.k_proj" is not matched by target_modules/);
    await writePeftStyle(dir, { ...cfg, r: 4 }, [
      { name: `${P}.q_proj.lora_A.weight`, shape: [2, 3], data: range(6, (i) => i) },
      { name: `${P}.q_proj.lora_B.weight`, shape: [3, 2], data: range(6, (i) => i) },
    ]);
    await expectError(/module "model.layers.0.self_attn.q_proj" has rank 2 but the config gives it r = 4/);
    await writePeftStyle(dir, cfg, [{ name: `${P}.q_proj.lora_magnitude_vector`, shape: [3], data: [1, 2, 3] }]);
    await expectError(/unsupported tensor ".*lora_magnitude_vector" \(DoRA\)/);
    await writePeftStyle(dir, { ...cfg, use_dora: true }, []);
    await expectError(/"use_dora": true \(DoRA\) is not supported/);
    await writePeftStyle(dir, { ...cfg, peft_type: 'IA3' }, []);
    await expectError(/"peft_type" must be "LORA"/);
    await writePeftStyle(dir, { ...cfg, r: 'x' }, []);
    await expectError(/adapter_config.json: "r" must be a positive integer/);
    await rm(join(dir, 'adapter_model.safetensors'));
    await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(cfg));
    await writeFile(join(dir, 'adapter_model.bin'), 'pickle');
    await expectError(/adapter_model.bin \(pickle\) is not supported/);
  }));

test('in-memory bytes round trip (object store form), BF16 on disk, null target_modules', async () => {
  const adapter: LoraAdapter = {
    config: { r: 2, loraAlpha: 2, targetModules: ['down_proj'], loraDropout: 0, useRslora: false },
    modules: new Map([['model.layers.0.mlp.down_proj', mod(2, 4, 3, 1, 5)]]),
  };
  const { weights, configJson } = peftAdapterToBytes(adapter, { dtype: 'BF16' });
  const st = parseSafetensors(weights, 'mem');
  assert.equal(st.tensors.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')!.dtype, 'BF16');
  const back = peftAdapterFromBytes(weights, configJson, 'mem');
  const m = adapter.modules.get('model.layers.0.mlp.down_proj')!;
  const g = back.modules.get('model.layers.0.mlp.down_proj')!;
  // BF16 keeps 8 significant bits: relative error ≤ 2^-8 (round to nearest).
  for (let i = 0; i < m.a.length; i++) assert.ok(Math.abs(g.a[i] - m.a[i]) <= 2 ** -8 * Math.abs(m.a[i]));
  for (let i = 0; i < m.b.length; i++) assert.ok(Math.abs(g.b[i] - m.b[i]) <= 2 ** -8 * Math.abs(m.b[i]));
  const cfg = JSON.parse(configJson);
  cfg.target_modules = null;
  assert.equal(peftAdapterFromBytes(weights, JSON.stringify(cfg), 'mem').modules.size, 1);
  assert.throws(() => peftAdapterFromBytes(weights, '{', 'mem'), /mem\/adapter_config.json: not valid JSON/);
});

test('adapters survive the object-store encoding exactly', () => {
  const adapter = {
    config: { r: 2, loraAlpha: 4, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
    modules: new Map([
      [
        'model.layers.0.self_attn.q_proj',
        {
          a: Float32Array.from([1, 2, 3, 4, 5, 6]),
          b: Float32Array.from([0.5, -1, 2, 3]),
          rank: 2,
          inFeatures: 3,
          outFeatures: 2,
          scaling: 2,
        },
      ],
    ]),
  };
  const back = adapterFromObjectBytes(adapterToObjectBytes(adapter), 'x');
  assert.deepEqual(back, adapter);
});
