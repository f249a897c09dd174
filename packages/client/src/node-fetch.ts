import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * `fetch`, except that a request whose body is a stream goes out through
 * node:http with backpressure. Node 20's fetch (undici) reads a streamed
 * request body far ahead of the socket: uploading a 512 MB file held about
 * 512 MB in memory, where node:http holds a few chunks.
 */
export const streamingFetch: typeof fetch = async (input, init) => {
  const body = init?.body;
  if (!(body instanceof ReadableStream)) return fetch(input, init);
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const headers = Object.fromEntries(new Headers(init?.headers).entries());
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const signal = init?.signal ?? undefined;
  return new Promise<Response>((resolve, reject) => {
    const req = send(url, { method: init?.method ?? 'POST', headers, signal });
    req.on('error', (error) => reject(new TypeError('fetch failed', { cause: error })));
    req.on('response', (res: IncomingMessage) => {
      const answer = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) answer.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      const empty = res.statusCode === 204 || res.statusCode === 304;
      resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status: res.statusCode ?? 0, headers: answer }));
    });
    // An answer may come before the body is sent (413, 409): the pipeline's error is then not ours to report.
    pipeline(Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>), req).catch((error: unknown) => {
      req.destroy(error as Error);
    });
  });
};
