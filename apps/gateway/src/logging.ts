import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pino from 'pino';
import type { Params } from 'nestjs-pino';
import type { ShepherdConfig } from '@shepherd/config';
import { createLogger, redactRequest } from '@shepherd/logging';

/**
 * JSON lines to stdout, and to `<logging_directory>/gateway.log` when the
 * config names a directory, redacted as every service's are. Each request
 * gets an id (the client's `X-Request-Id` when it sends one) that every line
 * of that request carries; its URL and query lose token-like values.
 */
export function loggerParams(config: ShepherdConfig, destination?: pino.DestinationStream): Params {
  const logger = createLogger({
    service: 'gateway',
    level: config.logging.level,
    directory: config.logging.directory,
    destination,
  });
  return {
    pinoHttp: {
      logger,
      // A lean access line: every header on every request cost more CPU than the request (measured in
      // the bench); the ones an operator reads are kept, credentials never.
      serializers: { req: leanRequest, res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }) },
      customLogLevel: (_req: IncomingMessage, res: ServerResponse, error?: Error) => (error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info'),
      genReqId: (req: IncomingMessage, res: ServerResponse) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
        res.setHeader('x-request-id', id);
        return id;
      },
    },
  };
}

interface SerializedRequest {
  id?: unknown;
  method?: string;
  url?: string;
  headers?: Record<string, unknown>;
  remoteAddress?: string;
}

/** The request fields worth a line: id, method, redacted URL, client, size and agent. */
function leanRequest(req: SerializedRequest): Record<string, unknown> {
  const { url } = redactRequest({ url: req.url });
  const headers = req.headers ?? {};
  return {
    id: req.id,
    method: req.method,
    url,
    remoteAddress: req.remoteAddress,
    ...(headers['content-length'] !== undefined ? { contentLength: headers['content-length'] } : {}),
    ...(headers['user-agent'] !== undefined ? { userAgent: headers['user-agent'] } : {}),
  };
}
