import type { ProgressListener } from './types';

/** A file coming from the gateway (a result or an input), streamed: read `body` once, or one of the helpers. */
export class Download {
  /** The bytes as they arrive; with a progress listener, counted on the way. */
  readonly body: ReadableStream<Uint8Array>;
  /** From Content-Length; null when the gateway streams without one. */
  readonly size: number | null;
  readonly contentType: string | null;

  constructor(
    /** `inputs/<path>` or `outputs/<file>`. */
    readonly file: string,
    response: Response,
    onProgress?: ProgressListener,
  ) {
    const length = response.headers.get('content-length');
    this.size = length !== null && /^\d+$/.test(length) ? Number(length) : null;
    this.contentType = response.headers.get('content-type');
    const body = response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    this.body = onProgress ? body.pipeThrough(countBytes(file, this.size, onProgress)) : body;
  }

  async bytes(): Promise<Uint8Array> {
    return new Uint8Array(await new Response(this.body).arrayBuffer());
  }

  async text(): Promise<string> {
    return new Response(this.body).text();
  }

  /** Parsed JSON; the caller narrows it (a runner's output has no schema here). */
  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }
}

/** Passes chunks through unchanged, telling the listener how many bytes went by. */
export function countBytes(file: string, total: number | null, onProgress: ProgressListener): TransformStream<Uint8Array, Uint8Array> {
  let loaded = 0;
  return new TransformStream({
    transform(chunk, controller) {
      loaded += chunk.byteLength;
      onProgress({ file, loaded, total, done: false });
      controller.enqueue(chunk);
    },
    flush() {
      onProgress({ file, loaded, total: total ?? loaded, done: true });
    },
  });
}
