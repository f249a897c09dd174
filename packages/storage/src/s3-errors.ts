import { S3Error } from 'minio';

/** Network failures: the server is down, unreachable or hung up on us. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EPROTO',
]);
/** The server answered but refuses us: wrong keys or policy. Nothing a retry of the job fixes. */
const REFUSED_CODES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch']);

/** Why the error means the server cannot be used, or undefined when it is an ordinary error. */
export function unavailableReason(error: unknown): string | undefined {
  // Duck-typed: errors from Node's sockets may come from another realm (Jest's sandbox).
  if (typeof error !== 'object' || error === null) return undefined;
  const message = String((error as { message?: unknown }).message ?? '');
  const code = codeOf(error);
  if (code !== undefined && (NETWORK_CODES.has(code) || REFUSED_CODES.has(code) || /CERT|^ERR_(SSL|TLS)/.test(code))) {
    return message.includes(code) ? message : `${code}: ${message}`;
  }
  // Node's dual-stack connect ("localhost") fails with an AggregateError, one error per address.
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner)) {
    for (const each of inner) {
      const reason = unavailableReason(each);
      if (reason !== undefined) return reason;
    }
  }
  // A 5xx answer: minio (retries off) throws a plain Error with this message, no code.
  if (/^Request failed after \d+ retries/.test(message)) return message;
  return undefined;
}

/** The server got the request and failed it (not a network or credentials problem): worth another way. */
export function answeredByServer(error: unknown): boolean {
  if (error instanceof S3Error) return !REFUSED_CODES.has(error.code ?? '') && error.code !== 'NoSuchBucket';
  return error instanceof Error && /^Request failed after \d+ retries/.test(error.message);
}

export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
