// Feeds the dashboard from the JetStream events stream: an ordered consumer (it starts at the first
// message by default; passing deliver_policy explicitly made nats 2.29 deliver nothing here),
// so a dashboard started late (or a restarted coordinator) shows every job's whole history.
import type { NatsConnection } from 'nats';
import { parseEvent, type ChorusEvent } from '../../shared/nats/events.ts';
import { natsNames } from '../../shared/nats/subjects.ts';

export interface JetStreamEvents extends AsyncIterable<ChorusEvent> {
  stop(): void;
}

export function jetStreamEvents(nc: NatsConnection, prefix?: string): JetStreamEvents {
  const names = natsNames(prefix);
  let stopped = false;
  let stopCurrent: (() => void) | null = null;
  return {
    stop() {
      stopped = true;
      stopCurrent?.();
    },
    async *[Symbol.asyncIterator]() {
      const js = nc.jetstream();
      const consumer = await js.consumers.get(names.eventsStream, { filterSubjects: names.eventsFilter });
      const messages = await consumer.consume();
      stopCurrent = () => void messages.stop();
      if (stopped) messages.stop();
      for await (const m of messages) {
        if (stopped) break;
        let ev: ChorusEvent;
        try {
          ev = parseEvent(m.data, m.seq);
        } catch {
          continue; // an event type this build does not know: show what we can
        }
        yield ev;
      }
    },
  };
}
