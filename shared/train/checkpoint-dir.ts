// A local run's checkpoints (the directory container of checkpoint.ts): <run>/checkpoints/step-N/ holds
//   adapter_model.safetensors + adapter_config.json   the adapter (a PEFT directory on its own)
//   optimizer.safetensors                             Adam moments: exp_avg.<module>.lora_A|B, exp_avg_sq.…
//   trainer_state.json                                step, Adam step counts, data cursor, RNG, CoTo counts
// A checkpoint is written into a temporary directory and renamed into place, so a crash mid-write
// never leaves a step-N that --resume would trust.
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError, errorMessage } from '../errors.ts';
import { readPeftAdapter, writePeftAdapter } from '../formats/peft.ts';
import { readSafetensorsFile } from '../formats/safetensors.ts';
import { writeSafetensorsFile } from '../formats/safetensors-write.ts';
import { fromStateJson, readSlotTensors, slotTensors, stateJsonOf, type StateJson } from './checkpoint.ts';
import type { AdapterTrainer } from './trainer.ts';

const CHECKPOINTS_DIR = 'checkpoints';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'trainer_state.json';

function checkpointDir(runDir: string, step: number): string {
  return join(runDir, CHECKPOINTS_DIR, `step-${step}`);
}

export async function saveCheckpoint(runDir: string, trainer: AdapterTrainer): Promise<string> {
  const s = trainer.state();
  const final = checkpointDir(runDir, s.step);
  const tmp = `${final}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writePeftAdapter(tmp, trainer.getAdapter());
  const moments = slotTensors(trainer.layout, 'exp_avg', s.expAvg);
  slotTensors(trainer.layout, 'exp_avg_sq', s.expAvgSq, moments);
  await writeSafetensorsFile(join(tmp, OPTIMIZER_FILE), moments, { format: 'pt' });
  await writeFile(join(tmp, STATE_FILE), JSON.stringify(stateJsonOf(trainer, s), null, 2) + '\n');
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
  const state = fromStateJson(json, trainer.layout, statePath);
  const params = trainer.layout.flatten(await readPeftAdapter(dir));
  const optimizerPath = join(dir, OPTIMIZER_FILE);
  const moments = (await readSafetensorsFile(optimizerPath)).tensors;
  trainer.restore(
    {
      ...state,
      params,
      expAvg: readSlotTensors(trainer.layout, 'exp_avg', moments, optimizerPath),
      expAvgSq: readSlotTensors(trainer.layout, 'exp_avg_sq', moments, optimizerPath),
    },
    statePath,
  );
}
