import { createHmac } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { ResolvedAddress } from './webhook-target';

// Signing the Standard Webhooks way (standardwebhooks.com): three headers,
// `webhook-id` (the message id, the same on every retry), `webhook-timestamp`
// (seconds, the time of this try) and `webhook-signature`: `v1,` and the
// base64 HMAC-SHA256 of `${id}.${timestamp}.${body}` under the secret's bytes.

/** The key bytes of a `webhooks.secret`: base64 after `whsec_`, else the string's UTF-8 bytes. */
export function webhookKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

export function webhookSignature(key: Buffer, messageId: string, timestamp: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${messageId}.${timestamp}.${body}`).digest('base64')}`;
}

export function signedHeaders(key: Buffer, messageId: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': webhookSignature(key, messageId, timestamp, body),
  };
}

export interface PostOptions {
  url: URL;
  /** The address checked for this URL's host: the connection goes there and nowhere else. */
  address: ResolvedAddress;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  /** Aborts the try (shutdown). */
  signal?: AbortSignal;
}

/**
 * POSTs once and answers the status code (the answer's body is read and
 * dropped). Redirects are not followed: a 3xx is a failed try, since a
 * redirect could lead past the host check. Rejects on a network error or
 * when `timeoutMs` passes.
 */
export function postOnce(options: PostOptions): Promise<number> {
  const { url, address, body } = options;
  // The host name stays in the URL (Host header, TLS name check); only the
  // address lookup is pinned to the checked one.
  const pinned: LookupFunction = (_host, lookupOptions, callback) => {
    if (lookupOptions.all) (callback as unknown as (e: null, all: ResolvedAddress[]) => void)(null, [address]);
    else callback(null, address.address, address.family);
  };
  const signals = [AbortSignal.timeout(options.timeoutMs), ...(options.signal ? [options.signal] : [])];
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { ...options.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'Shepherd-Webhooks' },
      lookup: pinned,
      agent: false, // no sockets kept to receivers
      signal: AbortSignal.any(signals),
    });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      res.on('error', reject);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.resume();
    });
    req.end(body);
  });
}
