// The memory plan: before the first step, estimate the peak memory of one training step from the model's
// shape, the batch and the step options, compare it with what the engine and the host can hold, and either
// resolve the spec's `auto`s into concrete EngineOptions or refuse with one error that names the estimate,
// the limit and what to change. Without it a step that does not fit ends in the wasm heap's `Aborted()` or an
// XNNPACK status code, minutes into a run.
//
// The estimate counts float32 bytes of what one step keeps alive at its peak:
//   weights      base weights in the engine: all of them (resident), or one widened layer plus the LM head
//                (streamed; the host then keeps every weight in its stored dtype)
//   lora         A/B variables, their gradients and the Adam moments (engine and host copies)
//   activations  what the backward needs from the forward: every layer's intermediates, or with
//                recomputation each layer's input plus one layer's intermediates
//   transient    the largest short-lived piece: attention scores of one layer (or one block), the logits of
//                one head chunk with their gradient, one layer's backward
// The per-token coefficients count the tensors the forward in shared/model/llama.ts creates per layer; they
// are checked against measured peaks by `npm run bench -- scale` (docs/SCALE.md), not by tests.
import { ChorusError } from '../errors.ts';
import { moduleShape, MODULE_NAMES, type ModuleName } from '../model/modules.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { LoraConfig } from '../lora/types.ts';
import type { EngineOptions, TrainingSettings } from './settings.ts';

const F32 = 4;
export const GiB = 1024 ** 3;

/** A memory limit and how to name it in a message ("the wasm heap", "device cpu:0 (--memory)"). */
interface MemoryLimit {
  bytes: number;
  what: string;
}

/** engine: where tensors live (null: the same memory as the host). host: the process's memory (RSS). */
export interface MemoryLimits {
  engine: MemoryLimit | null;
  host: MemoryLimit | null;
  /** The engine's heap is part of the process (wasm, cpu, tensorflow on CPU): it counts in the host too. */
  engineInHost: boolean;
  /** XNNPACK (wasm) keeps a packed copy of every weight matrix it multiplies. */
  packsWeights?: boolean;
}

/** The wasm32 engine cannot address more than 4 GiB, whatever the machine has. */
export const WASM_HEAP_LIMIT = 4 * GiB;
// Calibration (docs/SCALE.md; 135M shape, wasm, plain path at 1×128 and 2×128): the heap grew 1.08 GiB per 128
// tokens, 3.2× the forward intermediates counted below, because the tape keeps every forward tensor and the
// backward's gradients until the gradient pass ends; at zero tokens it held twice the float32 weights (XNNPACK
// keeps a packed copy of every weight matrix it multiplies) plus ~0.2 GiB; RSS was the heap plus ~0.3 GiB.
/** Bytes held per counted forward intermediate (forward + backward tape). */
const TAPE = 3.3;
/** The engine's own heap before any weight: the wasm module, XNNPACK's workspace, RoPE tables. */
const ENGINE_BASE = 0.25 * GiB;
/** Node, tfjs, data and the JS heap outside the engine. */
const PROCESS_OVERHEAD = 0.35 * GiB;
/** Share of a limit a plan may fill: allocator fragmentation and XNNPACK's packed weight copies live in the rest. */
const FILL = 0.85;
/** A streamed head widens the vocabulary in slabs of at most this many floats (shared/model/weights.ts). */
const HEAD_SLAB_FLOATS = 1 << 24;
/** Attention scores and one head chunk each stay under this share of the engine budget. */
const TRANSIENT_SHARE = 1 / 16;

export interface PlanRequest {
  config: LlamaConfig;
  training: Pick<TrainingSettings, 'batchSize' | 'seqLen' | 'gradientCheckpointing' | 'baseWeights'>;
  lora: Pick<LoraConfig, 'r' | 'targetModules' | 'loraDropout'>;
  /** Bytes of the base weights as stored on disk (BF16 models: 2 per parameter). */
  storedBytes: number;
  limits: MemoryLimits;
  /** How the spec names the training section in messages (default "training"; a task: "tasks[1].training"). */
  field?: string;
}

export interface MemoryEstimate {
  /** Peak bytes held by the engine. */
  engineBytes: number;
  /** Peak resident set of the process. */
  hostBytes: number;
  parts: { weights: number; hostWeights: number; lora: number; activations: number; transient: number };
}

export interface MemoryPlan {
  options: Required<Pick<EngineOptions, 'gradientCheckpointing' | 'baseWeights' | 'headChunkTokens'>> &
    Pick<EngineOptions, 'attentionBlock'>;
  estimate: MemoryEstimate;
  /** What `auto` chose, for logs: "gradient_checkpointing auto→true, base_weights auto→resident". */
  summary: string;
}

/** Parameter counts of the frozen base. */
export function baseParameters(c: LlamaConfig): { perLayer: number; embedding: number; head: number; total: number } {
  let perLayer = 2 * c.hiddenSize;
  for (const name of MODULE_NAMES) {
    const { inFeatures, outFeatures } = moduleShape(c, name);
    perLayer += inFeatures * outFeatures;
  }
  const embedding = c.vocabSize * c.hiddenSize;
  const head = c.tieWordEmbeddings ? 0 : embedding;
  return { perLayer, embedding, head, total: c.numHiddenLayers * perLayer + embedding + head + c.hiddenSize };
}

/** Trainable LoRA parameters (every targeted module of every layer). */
export function loraParameters(c: LlamaConfig, lora: Pick<LoraConfig, 'r' | 'targetModules'>): number {
  let n = 0;
  for (const name of lora.targetModules) {
    if (!(MODULE_NAMES as readonly string[]).includes(name)) continue;
    const { inFeatures, outFeatures } = moduleShape(c, name as ModuleName);
    n += lora.r * (inFeatures + outFeatures);
  }
  return n * c.numHiddenLayers;
}

/** float32 values one decoder layer keeps for its backward, per token (scores excluded). */
function layerFloatsPerToken(c: LlamaConfig, lora: PlanRequest['lora']): number {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  // Two RMSNorms (3 × hidden each), two residual adds and the o/down outputs: 10 × hidden. Queries: the
  // projection, head transpose, four RoPE terms, the 1/√d scale and the attention output and its transpose:
  // 9 × q. Keys and values together: 9 × kv. SwiGLU: gate, up, sigmoid and two products: 5 × intermediate.
  let n = 10 * c.hiddenSize + 9 * q + 9 * kv + 5 * c.intermediateSize;
  for (const name of lora.targetModules) {
    if (!(MODULE_NAMES as readonly string[]).includes(name)) continue;
    const { inFeatures, outFeatures } = moduleShape(c, name as ModuleName);
    // x·A, the delta and the sum; dropout keeps a masked copy of x.
    n += lora.r + 2 * outFeatures + (lora.loraDropout > 0 ? 2 * inFeatures : 0);
  }
  return n;
}

/** float32 values of one layer's dense attention: scores, masked scores and probabilities. */
function denseScoreFloats(c: LlamaConfig, batch: number, seq: number, block?: number): number {
  const q = block ?? seq;
  const k = block ?? seq;
  // A blocked pass holds one block's scores plus its running max/sum and output accumulator.
  return 3 * batch * c.numAttentionHeads * q * k + (block ? batch * c.numAttentionHeads * seq * (c.headDim + 2) : 0);
}

interface Candidate {
  gradientCheckpointing: boolean;
  baseWeights: 'resident' | 'streamed';
}

/** The estimate for fixed options. */
export function estimateMemory(req: PlanRequest, o: MemoryPlan['options']): MemoryEstimate {
  const c = req.config;
  const B = req.training.batchSize;
  const T = req.training.seqLen;
  const N = B * T;
  const L = c.numHiddenLayers;
  const p = baseParameters(c);
  const layerWeights = p.perLayer * F32;
  // On wasm each float32 weight in the engine is held twice: the tensor and XNNPACK's packed copy.
  const PACKED = req.limits.packsWeights ? 2 : 1;
  // Resident: every layer plus the embedding and an [hidden, vocab] head (a transposed copy when tied), each
  // with an XNNPACK-packed copy. Streamed: one widened layer (and its packed copy) in the forward and again in
  // its backward, and two vocabulary slabs of the head.
  const slab = Math.min(HEAD_SLAB_FLOATS, p.embedding) * F32;
  const weights =
    o.baseWeights === 'resident'
      ? PACKED * (L * p.perLayer + 2 * p.embedding) * F32
      : 2 * PACKED * layerWeights + 2 * slab;
  const hostWeights = o.baseWeights === 'streamed' ? req.storedBytes : 0;
  const loraN = loraParameters(c, req.lora);
  // One layer's forward intermediates (dense or blocked scores included) and what its backward adds.
  const layerStep = TAPE * (N * layerFloatsPerToken(c, req.lora) + denseScoreFloats(c, B, T, o.attentionBlock)) * F32;
  const recompute = o.gradientCheckpointing || o.baseWeights === 'streamed';
  // Without recomputation every layer's tape lives until the gradient pass ends; with it, each layer's input
  // and its gradient, plus one layer rebuilt at a time.
  const activations = recompute ? 2 * L * N * c.hiddenSize * F32 + layerStep : L * layerStep;
  // One head chunk: logits, their softmax and their gradient; plus the final hidden states and their gradient.
  const transient = 3 * Math.min(N, o.headChunkTokens) * c.vocabSize * F32 + 2 * N * c.hiddenSize * F32;
  const engineBytes = ENGINE_BASE + weights + 3 * loraN * F32 + activations + transient;
  // Host: parameters, Adam moments, gradient sums and a read-back in Float32Arrays, and the stored weights.
  const hostOwn = PROCESS_OVERHEAD + 5 * loraN * F32 + hostWeights;
  const hostBytes = hostOwn + (req.limits.engineInHost ? engineBytes : 0);
  return {
    engineBytes,
    hostBytes,
    parts: { weights, hostWeights, lora: 8 * loraN * F32, activations, transient },
  };
}

function fmt(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
}

function fits(e: MemoryEstimate, limits: MemoryLimits): boolean {
  return (
    (!limits.engine || e.engineBytes <= FILL * limits.engine.bytes) &&
    (!limits.host || e.hostBytes <= FILL * limits.host.bytes)
  );
}

/** Attention blocks and head chunk for one candidate: dense scores and 1024-token chunks while they are small. */
function transientOptions(req: PlanRequest, cand: Candidate): MemoryPlan['options'] {
  const c = req.config;
  const { batchSize: B, seqLen: T } = req.training;
  const budgetOf = (l: MemoryLimit | null) => (l ? l.bytes : Infinity);
  const budget = TRANSIENT_SHARE * Math.min(budgetOf(req.limits.engine), budgetOf(req.limits.host));
  let attentionBlock: number | undefined;
  if (Number.isFinite(budget) && denseScoreFloats(c, B, T) * F32 > budget) {
    // The largest power-of-two block (≥ 64) whose scores fit the budget.
    attentionBlock = 64;
    while (attentionBlock * 2 < T && denseScoreFloats(c, B, T, attentionBlock * 2) * F32 <= budget) attentionBlock *= 2;
  }
  let headChunkTokens = 1024;
  while (headChunkTokens > 64 && Number.isFinite(budget) && 3 * headChunkTokens * c.vocabSize * F32 > budget) {
    headChunkTokens /= 2;
  }
  return { ...cand, attentionBlock, headChunkTokens };
}

/**
 * Resolves `auto` (fastest first: resident without recomputation, then with it, then streamed) or checks the
 * fixed choices; throws a ChorusError naming the estimate, the limit and what to change when nothing fits.
 */
export function planMemory(req: PlanRequest): MemoryPlan {
  const c = req.config;
  const field = req.field ?? 'training';
  const { gradientCheckpointing: gc, baseWeights: bw, seqLen } = req.training;
  if (seqLen > c.maxPositionEmbeddings) {
    throw new ChorusError(
      `${field}.seq_len: ${seqLen} exceeds the model's max_position_embeddings (${c.maxPositionEmbeddings}); lower ${field}.seq_len`,
    );
  }
  if (bw === 'streamed' && gc === false) {
    throw new ChorusError(
      `${field}.base_weights: streamed recomputes every layer in the backward, so ${field}.gradient_checkpointing cannot be false (use true or auto)`,
    );
  }
  const candidates: Candidate[] = [];
  for (const baseWeights of bw === 'auto' ? (['resident', 'streamed'] as const) : [bw]) {
    for (const gradientCheckpointing of gc === 'auto' ? [false, true] : [gc]) {
      if (baseWeights === 'streamed' && !gradientCheckpointing) continue;
      candidates.push({ gradientCheckpointing, baseWeights });
    }
  }
  const tried = candidates.map((cand) => {
    const options = transientOptions(req, cand);
    return { options, estimate: estimateMemory(req, options) };
  });
  const ok = tried.find((t) => fits(t.estimate, req.limits));
  if (ok) {
    const said = (key: string, v: unknown, chosen: unknown) => `${key} ${v === 'auto' ? `auto→${chosen}` : chosen}`;
    const summary = [
      said('gradient_checkpointing', gc, ok.options.gradientCheckpointing),
      said('base_weights', bw, ok.options.baseWeights),
      ok.options.attentionBlock ? `attention blocks of ${ok.options.attentionBlock}` : 'dense attention',
      `head chunks of ${ok.options.headChunkTokens} tokens`,
      `estimate ${fmt(ok.estimate.engineBytes)} engine, ${fmt(ok.estimate.hostBytes)} process`,
    ].join(', ');
    return { ...ok, summary };
  }
  throw refusal(req, tried[tried.length - 1], field);
}

function refusal(
  req: PlanRequest,
  leanest: { options: MemoryPlan['options']; estimate: MemoryEstimate },
  field: string,
) {
  const { limits } = req;
  const e = leanest.estimate;
  const o = leanest.options;
  const over =
    limits.engine && e.engineBytes > FILL * limits.engine.bytes
      ? `${fmt(e.engineBytes)} of engine memory, over ${limits.engine.what} (${fmt(limits.engine.bytes)}, ${Math.round(FILL * 100)}% usable)`
      : `${fmt(e.hostBytes)} of process memory, over ${limits.host!.what} (${fmt(limits.host!.bytes)}, ${Math.round(FILL * 100)}% usable)`;
  const { batchSize: B, seqLen: T, gradientCheckpointing: gc, baseWeights: bw } = req.training;
  const fixes: string[] = [];
  if (gc === false) fixes.push(`set ${field}.gradient_checkpointing: auto`);
  if (bw === 'resident') fixes.push(`set ${field}.base_weights: auto`);
  if (B > 1) fixes.push(`lower ${field}.batch_size`);
  if (T > 16) fixes.push(`lower ${field}.seq_len`);
  fixes.push('use a device with more memory');
  return new ChorusError(
    `${field}: batch_size ${B} × seq_len ${T} on this model needs about ${over}, even with ` +
      `gradient_checkpointing ${o.gradientCheckpointing} and base_weights ${o.baseWeights}; ${fixes.join(', or ')}`,
  );
}
