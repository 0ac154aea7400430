// Training checkpoints: <run>/checkpoints/step-N/ holds
//   adapter_model.safetensors + adapter_config.json   the adapter (a PEFT directory on its own)
//   optimizer.safetensors                             Adam moments: exp_avg.<module>.lora_A|B, exp_avg_sq.…
//   trainer_state.json                                step, Adam step counts, data cursor, RNG, CoTo counts
// A checkpoint is written into a temporary directory and renamed into place, so a crash mid-write
// never leaves a step-N that --resume would trust.
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError, errorMessage } from '../errors.ts';
import { readPeftAdapter, writePeftAdapter } from '../formats/peft.ts';
import {
  readSafetensorsFile,
  tensorToFloat32,
  writeSafetensorsFile,
  type TensorInput,
} from '../formats/safetensors.ts';
import type { AdapterTrainer, TrainerState } from './trainer.ts';

export const CHECKPOINTS_DIR = 'checkpoints';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const STATE_FILE = 'trainer_state.json';
const STATE_FORMAT = 'chorus-trainer-state';
const STATE_VERSION = 1;

interface StateJson {
  format: string;
  version: number;
  task: string;
  step: number;
  seed: number;
  /** Adam step count per module path. */
  module_steps: Record<string, number>;
  data_cursor: TrainerState['cursor'];
  activation: TrainerState['activation'];
  /** Every random draw is counter-based on (seed, step, …): the seed is the whole RNG state. */
  rng: { kind: 'counter'; seed: number };
}

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, CHECKPOINTS_DIR, `step-${step}`);
}

export async function saveCheckpoint(runDir: string, trainer: AdapterTrainer): Promise<string> {
  const s = trainer.state();
  const final = checkpointDir(runDir, s.step);
  const tmp = `${final}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writePeftAdapter(tmp, trainer.getAdapter());
  const tensors = new Map<string, TensorInput>();
  const moduleSteps: Record<string, number> = {};
  trainer.layout.slots.forEach((slot, i) => {
    const a = [slot.offset, slot.offset + slot.aLength] as const;
    const b = [slot.offset + slot.aLength, slot.offset + slot.aLength + slot.bLength] as const;
    for (const [kind, arr] of [
      ['exp_avg', s.expAvg],
      ['exp_avg_sq', s.expAvgSq],
    ] as const) {
      tensors.set(`${kind}.${slot.path}.lora_A`, { dtype: 'F32', shape: [slot.aLength], data: arr.slice(...a) });
      tensors.set(`${kind}.${slot.path}.lora_B`, { dtype: 'F32', shape: [slot.bLength], data: arr.slice(...b) });
    }
    moduleSteps[slot.path] = s.moduleSteps[i];
  });
  await writeSafetensorsFile(join(tmp, OPTIMIZER_FILE), tensors, { format: 'pt' });
  const state: StateJson = {
    format: STATE_FORMAT,
    version: STATE_VERSION,
    task: trainer.task.name,
    step: s.step,
    seed: s.seed,
    module_steps: moduleSteps,
    data_cursor: s.cursor,
    activation: s.activation,
    rng: { kind: 'counter', seed: s.seed },
  };
  await writeFile(join(tmp, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  return final;
}

/** Steps of the complete checkpoints of a run, newest first. */
async function checkpointSteps(runDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(join(runDir, CHECKPOINTS_DIR));
  } catch {
    return [];
  }
  return names
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
}

/** The newest complete checkpoint directory of a run, or null when there is none. */
export async function latestCheckpoint(runDir: string): Promise<string | null> {
  const steps = await checkpointSteps(runDir);
  return steps.length > 0 ? checkpointDir(runDir, steps[0]) : null;
}

/** Deletes all but the `keep` newest checkpoints (keep 0: delete none). */
export async function pruneCheckpoints(runDir: string, keep: number): Promise<void> {
  if (keep <= 0) return;
  for (const step of (await checkpointSteps(runDir)).slice(keep)) {
    await rm(checkpointDir(runDir, step), { recursive: true, force: true });
  }
}

/** Loads a checkpoint into a trainer built for the same task (adapter shapes must match). */
export async function loadCheckpoint(dir: string, trainer: AdapterTrainer): Promise<void> {
  const statePath = join(dir, STATE_FILE);
  let json: StateJson;
  try {
    json = JSON.parse(await readFile(statePath, 'utf8')) as StateJson;
  } catch (err) {
    throw new ChorusError(`${statePath}: cannot read the trainer state (${errorMessage(err)})`);
  }
  if (json.format !== STATE_FORMAT || json.version !== STATE_VERSION) {
    throw new ChorusError(`${statePath}: not a ${STATE_FORMAT} v${STATE_VERSION} file`);
  }
  if (!Number.isInteger(json.step) || json.step < 0)
    throw new ChorusError(`${statePath}: step must be a non-negative integer`);
  const adapter = await readPeftAdapter(dir);
  const params = trainer.layout.flatten(adapter);
  const opt = await readSafetensorsFile(join(dir, OPTIMIZER_FILE));
  const expAvg = new Float32Array(trainer.layout.size);
  const expAvgSq = new Float32Array(trainer.layout.size);
  const moduleSteps = trainer.layout.slots.map((slot) => {
    for (const [kind, arr] of [
      ['exp_avg', expAvg],
      ['exp_avg_sq', expAvgSq],
    ] as const) {
      for (const [which, offset, length] of [
        ['A', slot.offset, slot.aLength],
        ['B', slot.offset + slot.aLength, slot.bLength],
      ] as const) {
        const name = `${kind}.${slot.path}.lora_${which}`;
        const view = opt.tensors.get(name);
        if (!view) throw new ChorusError(`${join(dir, OPTIMIZER_FILE)}: missing tensor "${name}"`);
        const values = tensorToFloat32(view);
        if (values.length !== length) {
          throw new ChorusError(
            `${join(dir, OPTIMIZER_FILE)}: "${name}" holds ${values.length} values, expected ${length}`,
          );
        }
        arr.set(values, offset);
      }
    }
    const t = json.module_steps?.[slot.path];
    if (!Number.isInteger(t) || t < 0)
      throw new ChorusError(`${statePath}: module_steps["${slot.path}"] is missing or invalid`);
    return t;
  });
  trainer.restore(
    {
      step: json.step,
      params,
      expAvg,
      expAvgSq,
      moduleSteps,
      cursor: json.data_cursor,
      activation: json.activation,
      seed: json.seed,
    },
    statePath,
  );
}
