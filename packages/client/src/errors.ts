/**
 * Errors of the Shepherd API, one class per status code the gateway answers,
 * so callers can `catch (e) { if (e instanceof ConflictError) ... }`.
 * Every one carries the HTTP `status` (0 for a network failure) and the
 * gateway's `{"message"}`.
 */
export class ShepherdError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 400: a field, job id, path or query parameter the gateway refuses (the message names it). */
export class BadRequestError extends ShepherdError {}
/** 401: no token, or an unknown one. */
export class UnauthorizedError extends ShepherdError {}
/** 403: the token lacks the scope the route needs. */
export class ForbiddenError extends ShepherdError {}
/** 404: unknown job (or another token's), file or sheep. */
export class NotFoundError extends ShepherdError {}
/** 409: the job id was used already, the job already finished, or was cancelled. */
export class ConflictError extends ShepherdError {}
/** 413: a body over the gateway's payload or upload limit. */
export class PayloadTooLargeError extends ShepherdError {}

/** 429: over the token's rate or waiting-jobs limit; `retryAfter` in seconds when the gateway says. */
export class RateLimitedError extends ShepherdError {
  constructor(
    message: string,
    readonly retryAfter: number | null,
  ) {
    super(429, message);
  }
}

/** 503: Redis or storage unreachable, or an upload to the job still streams; `retryAfter` in seconds. */
export class UnavailableError extends ShepherdError {
  constructor(
    message: string,
    readonly retryAfter: number | null,
  ) {
    super(503, message);
  }
}

/** The job ended `failed`: asked for its result, the gateway answered 500 with the job's error. */
export class JobFailedError extends ShepherdError {
  constructor(
    readonly jobId: string,
    message: string,
  ) {
    super(500, message);
  }
}

/** 202 from a result: the job has not finished yet. */
export class NotReadyError extends ShepherdError {
  constructor(readonly jobId: string) {
    super(202, `Job \`${jobId}\` has not finished yet`);
  }
}

/** No answer at all: the connection failed or was cut (status 0). */
export class NetworkError extends ShepherdError {
  constructor(
    message: string,
    readonly cause?: unknown,
  ) {
    super(0, message);
  }
}

/** An answer the client cannot read: an event or body that does not match the API's schema. */
export class ProtocolError extends ShepherdError {}

/** The seconds of a `Retry-After` header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

/** The typed error for an answer the gateway gave with an error status. */
export function errorFor(status: number, message: string, retryAfter: string | null): ShepherdError {
  switch (status) {
    case 400:
      return new BadRequestError(status, message);
    case 401:
      return new UnauthorizedError(status, message);
    case 403:
      return new ForbiddenError(status, message);
    case 404:
      return new NotFoundError(status, message);
    case 409:
      return new ConflictError(status, message);
    case 413:
      return new PayloadTooLargeError(status, message);
    case 429:
      return new RateLimitedError(message, parseRetryAfter(retryAfter));
    case 503:
      return new UnavailableError(message, parseRetryAfter(retryAfter));
    default:
      return new ShepherdError(status, message);
  }
}

/** Reads `{"message"}` from an error answer; falls back to its text or its status line. */
export async function errorFromResponse(response: Response): Promise<ShepherdError> {
  const text = await response.text().catch(() => '');
  let message = text || `${response.status} ${response.statusText}`;
  try {
    const body = JSON.parse(text) as unknown;
    if (body && typeof body === 'object' && 'message' in body && typeof body.message === 'string') message = body.message;
  } catch {
    // not JSON: keep the text
  }
  return errorFor(response.status, message, response.headers.get('retry-after'));
}
