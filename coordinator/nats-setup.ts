// Creating the coordinator's JetStream resources with the settings the operator asked for
// (replicas, event retention), and refusing to run on ones that exist with other settings: a
// stream silently reused at 1 replica on a 3-node cluster loses the job state with its one node.
import {
  nanos,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type ObjectStore,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import { ChorusError, errorMessage } from '../shared/errors.ts';
import type { NatsNames } from '../shared/nats/subjects.ts';

export interface NatsLayout {
  /** Replicas of every stream, KV bucket and the object store (1 on a single server, 3 on a cluster). */
  replicas: number;
  /** Events older than this are dropped (ms; 0 keeps them forever). */
  eventsMaxAgeMs: number;
  /** The events stream drops its oldest events beyond this size (bytes; 0 means no limit). */
  eventsMaxBytes: number;
}

export const DEFAULT_LAYOUT: NatsLayout = { replicas: 1, eventsMaxAgeMs: 0, eventsMaxBytes: 0 };

/** The window in which a re-published event (same msg id) is dropped as a duplicate. */
const DUPLICATE_WINDOW_MS = 120_000;

interface Wanted {
  field: keyof StreamConfig;
  value: unknown;
  /** How the operator sets it here, and how to change the existing stream with the `nats` CLI. */
  flag: string;
  natsEdit: string;
}

export interface NatsResources {
  jobs: KV;
  workers: KV;
  objects: ObjectStore;
}

export async function ensureNatsResources(
  js: JetStreamClient,
  jsm: JetStreamManager,
  names: NatsNames,
  layout: NatsLayout,
): Promise<NatsResources> {
  if (!Number.isInteger(layout.replicas) || layout.replicas < 1 || layout.replicas > 5)
    throw new ChorusError(`--nats-replicas must be an integer from 1 to 5, got ${layout.replicas}`);
  const replicas: Wanted = {
    field: 'num_replicas',
    value: layout.replicas,
    flag: `--nats-replicas ${layout.replicas}`,
    natsEdit: `--replicas ${layout.replicas}`,
  };
  const maxAge = nanos(layout.eventsMaxAgeMs);
  const maxBytes = layout.eventsMaxBytes > 0 ? layout.eventsMaxBytes : -1;
  await ensureStream(
    jsm,
    layout,
    {
      name: names.eventsStream,
      subjects: [names.eventsFilter],
      num_replicas: layout.replicas,
      max_age: maxAge,
      max_bytes: maxBytes,
      // The server refuses a duplicate window longer than the stream's max age.
      duplicate_window: nanos(
        layout.eventsMaxAgeMs > 0 ? Math.min(DUPLICATE_WINDOW_MS, layout.eventsMaxAgeMs) : DUPLICATE_WINDOW_MS,
      ),
    },
    [
      replicas,
      { field: 'max_age', value: maxAge, flag: '--events-max-age', natsEdit: '--max-age' },
      { field: 'max_bytes', value: maxBytes, flag: '--events-max-bytes', natsEdit: '--max-bytes' },
    ],
  );
  const open = async <T>(stream: string, make: () => Promise<T>, extra: Wanted[] = []): Promise<T> => {
    const made = await createOrExplain(stream, layout, make);
    checkSettings(await jsm.streams.info(stream), [replicas, ...extra]);
    return made;
  };
  const history: Wanted = {
    field: 'max_msgs_per_subject',
    value: 1,
    flag: '(fixed)',
    natsEdit: '--max-msgs-per-subject 1',
  };
  const jobs = await open(
    `KV_${names.jobsBucket}`,
    () => js.views.kv(names.jobsBucket, { history: 1, replicas: layout.replicas }),
    [history],
  );
  const workers = await open(
    `KV_${names.workersBucket}`,
    () => js.views.kv(names.workersBucket, { history: 1, replicas: layout.replicas }),
    [history],
  );
  const objects = await open(`OBJ_${names.objectStore}`, () =>
    js.views.os(names.objectStore, { replicas: layout.replicas }),
  );
  return { jobs, workers, objects };
}

async function ensureStream(
  jsm: JetStreamManager,
  layout: NatsLayout,
  config: Partial<StreamConfig> & { name: string },
  wanted: Wanted[],
): Promise<void> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(config.name);
  } catch (err) {
    if (!/stream not found/i.test(errorMessage(err))) throw err;
    await createOrExplain(config.name, layout, () => jsm.streams.add(config));
    return;
  }
  checkSettings(info, wanted);
}

async function createOrExplain<T>(stream: string, layout: NatsLayout, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    const msg = errorMessage(err);
    if (layout.replicas > 1 && /replicas|non-clustered|insufficient resources|no suitable peers/i.test(msg))
      throw new ChorusError(
        `cannot create NATS stream ${stream} with ${layout.replicas} replicas (NATS says: ${msg}); ` +
          `--nats-replicas ${layout.replicas} needs a JetStream cluster of at least ${layout.replicas} servers ` +
          `(see infra/nats/cluster.conf), or use --nats-replicas 1 on a single server`,
      );
    throw err;
  }
}

/** Refuses a stream whose settings differ from what this coordinator was started with. */
function checkSettings(info: StreamInfo, wanted: Wanted[]): void {
  const config = info.config as unknown as Record<string, unknown>;
  for (const w of wanted) {
    const have = config[w.field];
    // NATS reports "no limit" as -1 or 0 depending on the field and version.
    const norm = (v: unknown) => (v === undefined || v === -1 || v === 0 ? 0 : v);
    if (norm(have) === norm(w.value)) continue;
    throw new ChorusError(
      `NATS stream ${info.config.name} exists with ${w.field} ${String(have)}, but this coordinator asks for ` +
        `${String(w.value)} (${w.flag}). Start the coordinator with the stream's settings, change the stream ` +
        `(nats stream edit ${info.config.name} ${w.natsEdit}), or use another --prefix`,
    );
  }
}
