// The flat parameter layout of an adapter: how A and B of every module sit in one Float32Array.
// Replicas exchange gradients and the optimiser keeps its moments in this layout, so it must be
// the same in every process: modules ordered by layer, then by MODULE_NAMES order (q, k, v, o,
// gate, up, down); within a module lora_A [r, in] row-major, then lora_B [out, r] row-major.
// A module's A and B are contiguous, and so are all modules of one layer.
import { ChorusError } from '../errors.ts';
import { layerOfModule, type LoraAdapter, type LoraModule } from '../lora/types.ts';
import { MODULE_NAMES } from '../model/llama.ts';

export interface FlatSlot {
  path: string;
  layer: number;
  /** Offset of lora_A; lora_B follows at offset + aLength. */
  offset: number;
  aLength: number;
  bLength: number;
}

function moduleOrder(path: string): number {
  const name = path.slice(path.lastIndexOf('.') + 1);
  const i = (MODULE_NAMES as readonly string[]).indexOf(name);
  return i < 0 ? MODULE_NAMES.length : i;
}

export class FlatLayout {
  readonly slots: FlatSlot[];
  readonly size: number;
  readonly numLayers: number;

  private constructor(slots: FlatSlot[], numLayers: number) {
    this.slots = slots;
    this.numLayers = numLayers;
    const last = slots[slots.length - 1];
    this.size = last ? last.offset + last.aLength + last.bLength : 0;
  }

  static fromAdapter(adapter: LoraAdapter, numLayers: number): FlatLayout {
    const paths = [...adapter.modules.keys()].sort(
      (x, y) => layerOfModule(x) - layerOfModule(y) || moduleOrder(x) - moduleOrder(y) || (x < y ? -1 : x > y ? 1 : 0),
    );
    let offset = 0;
    const slots = paths.map((path) => {
      const m = adapter.modules.get(path)!;
      const layer = layerOfModule(path);
      if (layer < 0 || layer >= numLayers) {
        throw new ChorusError(`adapter module ${path}: not inside one of the model's ${numLayers} layers`);
      }
      const slot = { path, layer, offset, aLength: m.rank * m.inFeatures, bLength: m.outFeatures * m.rank };
      offset += slot.aLength + slot.bLength;
      return slot;
    });
    return new FlatLayout(slots, numLayers);
  }

  /** Copies an adapter's A and B into one flat array (shapes must match this layout). */
  flatten(adapter: LoraAdapter, out: Float32Array = new Float32Array(this.size)): Float32Array {
    for (const s of this.slots) {
      const m = this.moduleOf(adapter, s);
      out.set(m.a, s.offset);
      out.set(m.b, s.offset + s.aLength);
    }
    return out;
  }

  /** Writes flat values back into an adapter's A and B arrays, in place. */
  unflattenInto(flat: Float32Array, adapter: LoraAdapter): LoraAdapter {
    for (const s of this.slots) {
      const m = this.moduleOf(adapter, s);
      m.a.set(flat.subarray(s.offset, s.offset + s.aLength));
      m.b.set(flat.subarray(s.offset + s.aLength, s.offset + s.aLength + s.bLength));
    }
    return adapter;
  }

  /** [offset, length] of every module in the active layers (contiguous per module). */
  rangesOf(activeLayers: boolean[]): Array<[number, number]> {
    return this.slots
      .filter((s) => activeLayers[s.layer])
      .map((s) => [s.offset, s.aLength + s.bLength] as [number, number]);
  }

  private moduleOf(adapter: LoraAdapter, s: FlatSlot): LoraModule {
    const m = adapter.modules.get(s.path);
    if (!m || m.a.length !== s.aLength || m.b.length !== s.bLength) {
      throw new ChorusError(
        `adapter module ${s.path}: ${m ? `A/B sizes ${m.a.length}/${m.b.length}` : 'missing'}, the trainer's layout expects ${s.aLength}/${s.bLength}`,
      );
    }
    return m;
  }
}
