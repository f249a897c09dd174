import type { Request } from 'express';
import { Transform, type TransformCallback } from 'node:stream';
import { badRequest, tooLarge } from '../errors/api-errors';

/** Declared size of the body, refused at once when it is over the limit. */
export function declaredSize(req: Request, limit: number): number | undefined {
  const header = req.headers['content-length'];
  // Neither a length nor chunks: HTTP/1.1 says the body is empty.
  if (header === undefined) return req.headers['transfer-encoding'] === undefined ? 0 : undefined;
  const size = Number(header);
  if (size > limit) throw tooLarge(`Upload of ${size} bytes is larger than the limit of ${limit} bytes`);
  return Number.isFinite(size) ? size : undefined;
}

/**
 * Passes bytes through; fails the stream once more than `limit` went by
 * (chunked uploads), or at its end when fewer than the declared `expected`
 * bytes came (a client that gave up half-way), so storage keeps nothing.
 */
export class ByteLimit extends Transform {
  private seen = 0;

  constructor(
    private readonly limit: number,
    private readonly expected?: number,
  ) {
    super();
  }

  override _flush(callback: TransformCallback): void {
    if (this.expected !== undefined && this.seen !== this.expected) {
      callback(badRequest(`The upload ended after ${this.seen} of the ${this.expected} bytes its Content-Length declared`));
      return;
    }
    callback();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      callback(tooLarge(`Upload is larger than the limit of ${this.limit} bytes`));
      return;
    }
    callback(null, chunk);
  }
}
