// The Node-only entry: inputs from files and streams, downloads saved to a
// directory. Everything of the browser-safe entry is re-exported.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ShepherdClient, type ClientOptions, type TransferOptions } from './client';
import { streamingFetch } from './node-fetch';
import type { Download } from './download';
import type { JobInput } from './types';

export * from './index';
export { streamingFetch } from './node-fetch';

/**
 * A client for Node: streamed uploads go through node:http (see
 * `streamingFetch`), so a big file does not fill memory.
 */
export function createNodeClient(options: ClientOptions): ShepherdClient {
  return new ShepherdClient({ ...options, fetch: options.fetch ?? streamingFetch });
}

/**
 * An input read from a file, streamed (never held in memory), with its
 * size as Content-Length. `name` is its path under `inputs/`; default
 * the file's base name. A retried upload reopens the file.
 */
export async function fileInput(path: string, name: string = basename(path)): Promise<JobInput> {
  const info = await stat(path);
  if (!info.isFile()) throw new Error(`${path} is not a file`);
  return {
    path: name,
    size: info.size,
    body: () => webStream(createReadStream(path, { highWaterMark: 256 * 1024 })),
  };
}

/**
 * A web stream that reads the Node stream only when pulled. Node 20's
 * `Readable.toWeb` reads ahead without backpressure: a 256 MB upload held
 * ~250 MB of it in memory. One chunk at a time keeps it flat.
 */
export function webStream(stream: Readable): ReadableStream<Uint8Array> {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await chunks.next();
        if (done) controller.close();
        else controller.enqueue(typeof value === 'string' ? new TextEncoder().encode(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      },
      async cancel(reason) {
        stream.destroy(reason instanceof Error ? reason : undefined);
        await chunks.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

/** An input from any Node stream, sent once; give `size` when it is known (S3 storage without multipart needs it). */
export function streamInput(stream: Readable, name: string, size?: number): JobInput {
  return { path: name, size, body: webStream(stream) };
}

/**
 * Writes a download to `path` (directories made), streamed, through a
 * temporary name so a cut transfer leaves no partial file; answers the bytes written.
 */
export async function saveDownload(download: Download, path: string): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const partial = `${path}.part-${process.pid}`;
  let written = 0;
  const source = Readable.fromWeb(download.body as WebReadableStream<Uint8Array>);
  source.on('data', (chunk: Buffer) => (written += chunk.length));
  try {
    await pipeline(source, createWriteStream(partial));
    await rename(partial, path);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return written;
}

export interface SaveOptions extends TransferOptions {
  /** The files to fetch, relative to the job's folder; default the one file the API defaults to (`output` or `input`). */
  files?: string[];
}

/** Saves files of the job's `outputs/` into `dir` under their own names; answers their paths. */
export async function saveResult(client: ShepherdClient, jobId: string, dir: string, options: SaveOptions = {}): Promise<string[]> {
  return saveAll(dir, options.files ?? ['output'], (file) => client.result(jobId, file, options));
}

/** Saves files of the job's `inputs/` into `dir` under their own names; answers their paths. */
export async function saveInput(client: ShepherdClient, jobId: string, dir: string, options: SaveOptions = {}): Promise<string[]> {
  return saveAll(dir, options.files ?? ['input'], (file) => client.input(jobId, file, options));
}

async function saveAll(dir: string, files: string[], open: (file: string) => Promise<Download>): Promise<string[]> {
  const saved: string[] = [];
  for (const file of files) {
    const target = resolve(dir, file);
    const inside = relative(resolve(dir), target);
    if (inside === '' || inside.startsWith('..')) throw new Error(`${file}: not a path inside ${dir}`);
    await saveDownload(await open(file), target);
    saved.push(join(dir, file));
  }
  return saved;
}
