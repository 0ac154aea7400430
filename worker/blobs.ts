// The agent's object-store transfers (adapters, checkpoints and job inputs go through the
// coordinator's UploadBlob / DownloadBlob). They outlive a coordinator restart: a transfer that
// finds the coordinator unreachable is retried for a while before it fails.
import * as grpc from '@grpc/grpc-js';
import type { ChorusClient } from '../shared/client/index.ts';
import { sha256Hex } from '../shared/digest.ts';
import { errorMessage } from '../shared/errors.ts';

/** How long transfers keep retrying while the coordinator is away (e.g. restarting). */
const RETRY_FOR_MS = 120_000;

export class BlobTransfer {
  constructor(
    private readonly client: ChorusClient,
    private readonly log: (line: string) => void,
    private readonly stopping: () => boolean,
  ) {}

  async upload(name: string, data: Uint8Array): Promise<{ sha256: string; size: number }> {
    const info = await this.retrying(`upload ${name}`, () => this.client.uploadBlob(name, data));
    return { sha256: info.sha256 || sha256Hex(data), size: data.length };
  }

  async download(name: string): Promise<Uint8Array> {
    return new Uint8Array(await this.retrying(`download ${name}`, () => this.client.downloadBlob(name)));
  }

  close(): void {
    this.client.close();
  }

  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + RETRY_FOR_MS;
    for (let delay = 200; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { code?: number }).code;
        const transient =
          code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.CANCELLED;
        if (!transient || this.stopping() || Date.now() > deadline) throw err;
        this.log(`worker: ${what}: ${errorMessage(err)}; retrying`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
