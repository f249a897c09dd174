import { json } from 'body-parser';
import type { Request, Response } from 'express';
import { Transform, type TransformCallback } from 'node:stream';
import { isUtf8 } from 'node:buffer';
import { ApiError, badRequest, tooLarge } from '../errors/api-errors';

/**
 * Parses a JSON body inside the handler, so parse errors (400) and
 * oversize bodies (413) reach the exception filter like any other error.
 * Any content type is read as JSON: the original's clients do not all set it.
 */
export function readJsonBody(req: Request, res: Response, limit: number): Promise<unknown> {
  const parse = json({ limit, strict: false, type: () => true, verify: refuseInvalidUtf8 });
  return new Promise((resolve, reject) => {
    parse(req, res, (error?: unknown) => (error ? reject(asClientError(error)) : resolve((req as { body?: unknown }).body)));
  });
}

/** A payload must reach the runner byte for byte: invalid UTF-8 would be replaced with U+FFFD silently. */
function refuseInvalidUtf8(_req: unknown, _res: unknown, body: Buffer): void {
  if (!isUtf8(body)) throw badRequest('The body is not valid UTF-8: send the payload as UTF-8 text (binary inputs go through the upload route)');
}

/** A body that cannot be decompressed is the client's fault (400), not ours. */
function asClientError(error: unknown): unknown {
  if (error instanceof ApiError) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('Z_') || code.startsWith('ERR__') || code.includes('BROTLI'))) {
    return badRequest(`The body could not be decompressed as its Content-Encoding says: ${(error as Error).message}`);
  }
  return error;
}

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
