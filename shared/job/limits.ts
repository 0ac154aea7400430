// The bounds a job spec must stay within. They keep one spec from exhausting the coordinator (a
// plan of 10^8 shards, a name too large to store, a parse that blocks the event loop) while leaving
// room far beyond any real run. docs/CLUSTER.md "Bounds and hostile input" lists them; change both.

/** Spec text, in bytes (UTF-8), refused before it is parsed. Keeps the linear parse under ~0.2 s. */
export const MAX_SPEC_BYTES = 256 * 1024;
/** Nesting of mappings and lists in a spec (the schema itself needs 4). */
export const MAX_SPEC_DEPTH = 32;
/** YAML aliases expanded while reading one spec (alias bombs grow exponentially). */
export const MAX_SPEC_ALIASES = 100;

export const MAX_TASKS = 64;
export const MAX_REPLICAS = 64;
/** Shards of one job: the sum of replicas over tasks. */
export const MAX_SHARDS = 256;
export const MAX_STEPS = 1_000_000;
/** Total work: the sum over tasks of replicas × steps (shard-steps the cluster runs). */
export const MAX_SHARD_STEPS = 10_000_000;
export const MAX_BATCH_SIZE = 4096;
export const MAX_SEQ_LEN = 131_072;
export const MAX_GRAD_ACCUM = 1024;
export const MAX_EVAL_BATCHES = 100_000;
/** training.eval_generate: stop strings, their length, and new tokens per answer. */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_CHARS = 64;
export const MAX_NEW_TOKENS = 4096;
export const MAX_KEEP_CHECKPOINTS = 1000;
export const MAX_LORA_RANK = 4096;
/** coto.shapley_samples: each permutation costs up to one evaluation pass per layer. */
export const MAX_SHAPLEY_SAMPLES = 64;
/** lora.alpha, merge.weights entries, max_grad_norm: scale factors; past this they are typos. */
export const MAX_SCALE = 1e6;
export const MAX_LR = 10;
export const MAX_WEIGHT_DECAY = 100;
export const MAX_MERGE_RANK = 65_536;

/** The job's display name (spec `name` or the submit request's name). */
export const MAX_NAME_CHARS = 128;
export const MAX_TASK_NAME_CHARS = 64;
/** Paths and chorus-object:// URIs. */
export const MAX_PATH_CHARS = 4096;
