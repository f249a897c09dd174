import { parse as parseContentType } from 'content-type';
import type { Request } from 'express';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ApiError, badRequest, tooLarge } from '../errors/api-errors';
import { NotUtf8Error, StreamedJson, type ParsedJson } from './streamed-json';

const NOT_UTF8 = 'The body is not valid UTF-8: send the payload as UTF-8 text (binary inputs go through the upload route)';

const DECOMPRESSORS: Record<string, () => Transform> = { gzip: createGunzip, deflate: createInflate, br: createBrotliDecompress };

/**
 * Reads a JSON body as it arrives, inside the handler, so every refusal
 * reaches the exception filter: each network (or decompressed) chunk is
 * checked, decoded and parsed on its own, so a large body never blocks the
 * event loop in one step. The top-level string under `streamedKey` comes
 * back as UTF-8 bytes (see StreamedJson), never as one string.
 *
 * What body-parser's json() gave the start-job route, kept: any Content-Type
 * is read as JSON (the original's clients do not all set it); 415 for a
 * charset other than utf-8 or an unknown Content-Encoding; 413 over `limit`
 * counting decompressed bytes, at once from a Content-Length that says so;
 * 400 for a body that does not decompress, is not UTF-8 or not JSON, in
 * that order when a body is several (413 first); an empty body is {}; a
 * request without a body gives `undefined`. Any JSON value may come at the
 * top (the caller's schema refuses what is not an object).
 */
export function readJsonBody(req: Request, limit: number, streamedKey?: string): Promise<ParsedJson> {
  if (!hasBody(req)) return Promise.resolve({ value: undefined });
  const charset = charsetOf(req);
  if (charset !== 'utf-8') return refuse(req, new ApiError(415, `unsupported charset "${charset.toUpperCase()}"`));
  const encoding = (req.headers['content-encoding'] || 'identity').toLowerCase();
  const decompress = DECOMPRESSORS[encoding];
  if (!decompress && encoding !== 'identity') return refuse(req, new ApiError(415, `unsupported content encoding "${encoding}"`));
  if (!decompress && Number(req.headers['content-length']) > limit) return refuse(req, overLimit(limit));
  return new Promise((resolve, reject) => new BodyReading(req, limit, decompress?.(), new StreamedJson(streamedKey), resolve, reject).start());
}

/** Body-parser's (type-is) rule: a body is framed by chunks or by a Content-Length. */
function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || !Number.isNaN(Number(req.headers['content-length']));
}

function charsetOf(req: Request): string {
  const header = req.headers['content-type'];
  return (header ? parseContentType(header).parameters.charset?.toLowerCase() : undefined) || 'utf-8';
}

/** Answers at once; the rest of the body is read and dropped, so the connection stays usable. */
function refuse(req: Request, error: ApiError): Promise<never> {
  req.resume();
  return Promise.reject(error);
}

function overLimit(limit: number): ApiError {
  return tooLarge(`Request body is larger than the limit of ${limit} bytes`);
}

/** One body being read: bytes counted, then parsed (and checked as UTF-8) chunk by chunk. */
class BodyReading {
  private received = 0;
  private settled = false;

  constructor(
    private readonly req: Request,
    private readonly limit: number,
    private readonly inflate: Transform | undefined,
    private readonly json: StreamedJson,
    private readonly resolve: (body: ParsedJson) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  private get source(): Readable {
    return this.inflate ?? this.req;
  }

  start(): void {
    this.source.on('data', this.onData);
    this.source.once('end', this.onEnd);
    this.req.on('error', this.onAbort);
    this.req.once('close', this.onClose);
    if (this.inflate) {
      this.inflate.on('error', this.onInflateError);
      this.req.pipe(this.inflate);
    }
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.settled) return;
    this.received += chunk.length;
    if (this.received > this.limit) {
      this.fail(overLimit(this.limit));
      return;
    }
    // Invalid UTF-8 and bad JSON are told once the body is in: a body over the limit is 413 whatever it holds.
    this.json.write(chunk);
    // One chunk per turn of the event loop: libuv would otherwise hand over
    // up to 32 reads of 64 KB from a socket in one go, all parsed before a
    // timer or another request gets a turn.
    this.source.pause();
    setImmediate(this.resume);
  };

  private readonly resume = (): void => {
    if (!this.settled) this.source.resume();
  };

  private readonly onEnd = (): void => {
    if (this.settled) return;
    this.json.end().then(
      (body) => this.finish(() => this.resolve(body)),
      (error: unknown) => this.fail(badRequest(error instanceof NotUtf8Error ? NOT_UTF8 : `Malformed JSON body: ${(error as Error).message}`)),
    );
  };

  private readonly onInflateError = (error: Error): void => {
    this.fail(badRequest(`The body could not be decompressed as its Content-Encoding says: ${error.message}`));
  };

  private readonly onAbort = (): void => {
    this.fail(badRequest('The request was aborted before its body ended'));
  };

  private readonly onClose = (): void => {
    if (!this.req.complete) this.onAbort();
  };

  private fail(error: ApiError): void {
    this.finish(() => this.reject(error));
  }

  private finish(settle: () => void): void {
    if (this.settled) return;
    this.settled = true;
    this.source.off('data', this.onData);
    this.source.off('end', this.onEnd);
    this.req.off('close', this.onClose);
    if (this.inflate) {
      this.req.unpipe(this.inflate);
      this.inflate.destroy();
    }
    // What is left of the body (after an early refusal, or past the end of a compressed stream) is dropped.
    this.req.resume();
    settle();
  }
}
