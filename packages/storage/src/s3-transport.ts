import * as http from 'node:http';
import * as https from 'node:https';
import type { ClientOptions } from 'minio';

/**
 * http(s).request with a deadline on the silent part of a request: connecting,
 * and waiting for the response headers once the body is sent. minio has no
 * timeout of its own, so a dead host would otherwise hang for minutes. Once
 * the headers arrive the deadline is lifted: a slow reader of a download must
 * not kill it.
 */
export function timedTransport(useSSL: boolean, timeoutMs: number): NonNullable<ClientOptions['transport']> {
  const base = useSSL ? https : http;
  const request = (options: https.RequestOptions, callback?: (response: http.IncomingMessage) => void) => {
    const req = base.request(options, callback);
    req.setTimeout(timeoutMs, () => {
      const error = new Error(`No answer within ${timeoutMs} ms`) as NodeJS.ErrnoException;
      error.code = 'ETIMEDOUT';
      req.destroy(error);
    });
    req.once('response', () => req.setTimeout(0));
    return req;
  };
  return { request } as unknown as NonNullable<ClientOptions['transport']>;
}
