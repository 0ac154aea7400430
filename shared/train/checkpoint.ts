// The one encoding of a trainer checkpoint, in two containers. Per-module flat state goes into
// tensors named "<kind>.<module path>.lora_A|B" (kind: params, exp_avg, exp_avg_sq), everything else
// (step, Adam step counts, data cursor, CoTo counts, seed) into one JSON state. A local run keeps them
// as a directory (checkpoint-dir.ts: the params as a PEFT adapter, the moments in
// optimizer.safetensors, the state in trainer_state.json); a cluster shard keeps them as one object
// in the object store (a safetensors file with every tensor and the state as metadata).
import { ChorusError } from '../errors.ts';
import { parseSafetensors, tensorToFloat32, type TensorView } from '../formats/safetensors.ts';
import { serializeSafetensors, type TensorInput } from '../formats/safetensors-write.ts';
import type { FlatLayout } from './layout.ts';
import type { AdapterTrainer, TrainerState } from './trainer.ts';

const STATE_FORMAT = 'chorus-trainer-state';
const STATE_VERSION = 1;
const BLOB_STATE_KEY = 'chorus_state';

export type StateKind = 'params' | 'exp_avg' | 'exp_avg_sq';

/** The JSON half of a checkpoint (trainer_state.json in a directory, metadata in a blob). */
export interface StateJson {
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

export function stateJsonOf(trainer: AdapterTrainer, s: TrainerState): StateJson {
  const moduleSteps: Record<string, number> = {};
  trainer.layout.slots.forEach((slot, i) => (moduleSteps[slot.path] = s.moduleSteps[i]));
  return {
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
}

/** Checks the JSON half and returns what it adds to the flat arrays, in layout order. */
export function fromStateJson(
  json: StateJson,
  layout: FlatLayout,
  source: string,
): Omit<TrainerState, 'params' | 'expAvg' | 'expAvgSq'> {
  if (json?.format !== STATE_FORMAT || json.version !== STATE_VERSION) {
    throw new ChorusError(`${source}: not a ${STATE_FORMAT} v${STATE_VERSION} state`);
  }
  if (!Number.isInteger(json.step) || json.step < 0)
    throw new ChorusError(`${source}: step must be a non-negative integer`);
  const moduleSteps = layout.slots.map((slot) => {
    const t = json.module_steps?.[slot.path];
    if (!Number.isInteger(t) || t < 0)
      throw new ChorusError(`${source}: module_steps["${slot.path}"] is missing or invalid`);
    return t;
  });
  return { step: json.step, moduleSteps, cursor: json.data_cursor, activation: json.activation, seed: json.seed };
}

/** One flat array of the layout as per-module tensors named "<kind>.<path>.lora_A|B". */
export function slotTensors(
  layout: FlatLayout,
  kind: StateKind,
  flat: Float32Array,
  out = new Map<string, TensorInput>(),
) {
  for (const slot of layout.slots) {
    const a = flat.slice(slot.offset, slot.offset + slot.aLength);
    const b = flat.slice(slot.offset + slot.aLength, slot.offset + slot.aLength + slot.bLength);
    out.set(`${kind}.${slot.path}.lora_A`, { dtype: 'F32', shape: [slot.aLength], data: a });
    out.set(`${kind}.${slot.path}.lora_B`, { dtype: 'F32', shape: [slot.bLength], data: b });
  }
  return out;
}

/** The inverse of slotTensors: every module's tensors must be there with the layout's sizes. */
export function readSlotTensors(layout: FlatLayout, kind: StateKind, tensors: Map<string, TensorView>, source: string) {
  const flat = new Float32Array(layout.size);
  for (const slot of layout.slots) {
    for (const [which, offset, length] of [
      ['A', slot.offset, slot.aLength],
      ['B', slot.offset + slot.aLength, slot.bLength],
    ] as const) {
      const name = `${kind}.${slot.path}.lora_${which}`;
      const view = tensors.get(name);
      if (!view) throw new ChorusError(`${source}: missing tensor "${name}"`);
      const values = tensorToFloat32(view);
      if (values.length !== length)
        throw new ChorusError(`${source}: "${name}" holds ${values.length} values, expected ${length}`);
      flat.set(values, offset);
    }
  }
  return flat;
}

/** A trainer's checkpoint as one object-store blob. */
export function encodeCheckpointBlob(trainer: AdapterTrainer): Uint8Array {
  const s = trainer.state();
  const tensors = slotTensors(trainer.layout, 'params', s.params);
  slotTensors(trainer.layout, 'exp_avg', s.expAvg, tensors);
  slotTensors(trainer.layout, 'exp_avg_sq', s.expAvgSq, tensors);
  return serializeSafetensors(tensors, { [BLOB_STATE_KEY]: JSON.stringify(stateJsonOf(trainer, s)) });
}

/** Restores a checkpoint blob into a trainer built for the same task. */
export function restoreCheckpointBlob(bytes: Uint8Array, trainer: AdapterTrainer, source: string): void {
  const { tensors, metadata } = parseSafetensors(bytes, source);
  const text = metadata[BLOB_STATE_KEY];
  if (text === undefined) throw new ChorusError(`${source}: not a Chorus checkpoint (no ${BLOB_STATE_KEY} metadata)`);
  let json: StateJson;
  try {
    json = JSON.parse(text) as StateJson;
  } catch (err) {
    throw new ChorusError(`${source}: ${BLOB_STATE_KEY} is not valid JSON (${(err as Error).message})`);
  }
  const layout = trainer.layout;
  trainer.restore(
    {
      ...fromStateJson(json, layout, source),
      params: readSlotTensors(layout, 'params', tensors, source),
      expAvg: readSlotTensors(layout, 'exp_avg', tensors, source),
      expAvgSq: readSlotTensors(layout, 'exp_avg_sq', tensors, source),
    },
    source,
  );
}
