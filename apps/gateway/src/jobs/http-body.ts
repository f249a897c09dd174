import { json } from 'body-parser';
import type { Request, Response } from 'express';
import { Transform, type TransformCallback } from 'node:stream';
import { tooLarge } from '../errors/api-errors';

/**
 * Parses a JSON body inside the handler, so parse errors (400) and
 * oversize bodies (413) reach the exception filter like any other error.
 * Any content type is read as JSON: the original's clients do not all set it.
 */
export function readJsonBody(req: Request, res: Response, limit: number): Promise<unknown> {
  const parse = json({ limit, strict: false, type: () => true });
  return new Promise((resolve, reject) => {
    parse(req, res, (error?: unknown) => (error ? reject(error) : resolve((req as { body?: unknown }).body)));
  });
}

/** Declared size of the body, refused at once when it is over the limit. */
export function declaredSize(req: Request, limit: number): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined) return undefined;
  const size = Number(header);
  if (size > limit) throw tooLarge(`Upload of ${size} bytes is larger than the limit of ${limit} bytes`);
  return Number.isFinite(size) ? size : undefined;
}

/** Passes bytes through and fails the stream once more than `limit` went by (chunked uploads). */
export class ByteLimit extends Transform {
  private seen = 0;

  constructor(private readonly limit: number) {
    super();
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
