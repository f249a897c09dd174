import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type pino from 'pino';
import type { Params } from 'nestjs-pino';
import type { ShepherdConfig } from '@shepherd/config';
import { createLogger, redactRequest, withFields } from '@shepherd/logging';

/**
 * The gateway's logger: JSON lines to stdout, and to
 * `<logging_directory>/gateway.log` when the config names a directory,
 * redacted as every service's are.
 */
export function gatewayLogger(config: ShepherdConfig, destination?: pino.DestinationStream): pino.Logger {
  return createLogger({ service: 'gateway', level: config.logging.level, directory: config.logging.directory, destination });
}

/**
 * nestjs-pino on our logger, with our access log (accessLog) in place of
 * pino-http: pino-http builds a child logger with the whole serialized
 * request on every request, logged or not, which cost more CPU than the
 * route itself (bench/results/profile-*.md). nestjs-pino still binds each
 * request's logger, so every line of a request carries its id.
 */
export function loggerParams(logger: pino.Logger): Params {
  return { pinoHttp: { logger }, useExisting: true };
}

type LoggedRequest = IncomingMessage & { id?: string; log?: pino.Logger };

/**
 * One line per request once it is answered (or dropped), at info, warn for
 * 4xx and dropped requests, error for 5xx, with nothing built when that
 * level is off. Each request gets an id (the client's `X-Request-Id` when it
 * sends one, up to 128 characters), echoed in the answer; its URL and query
 * lose token-like values and no header is logged but length and agent.
 */
export function accessLog(logger: pino.Logger): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (incoming, res, next) => {
    const req = incoming as LoggedRequest;
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
    req.id = id;
    req.log = requestLogger(logger, id);
    res.setHeader('x-request-id', id);
    const started = performance.now();
    const done = (): void => {
      res.off('finish', done);
      res.off('close', done);
      const dropped = !res.writableFinished;
      const status = res.statusCode;
      const level = status >= 500 ? 'error' : status >= 400 || dropped ? 'warn' : 'info';
      if (!logger.isLevelEnabled(level)) return;
      const line = { req: leanRequest(req, id), res: { statusCode: status }, responseTime: Math.round(performance.now() - started) };
      logger[level](line, dropped ? 'request aborted' : 'request completed');
    };
    res.on('finish', done);
    res.on('close', done);
    next();
  };
}

/**
 * The logger nestjs-pino binds to a request: every line carries `reqId`.
 * Added to each line as it is written rather than bound with `child({
 * reqId })`, which serializes and redacts its bindings at once (every
 * redaction path walked: about 20 KB of garbage per request), whether the
 * request logs a line or not; most log none.
 */
function requestLogger(logger: pino.Logger, reqId: string): pino.Logger {
  return withFields(logger, { reqId });
}

/** The request fields worth a line: id, method, redacted URL, client, size and agent. */
function leanRequest(req: IncomingMessage, id: string): Record<string, unknown> {
  const { url } = redactRequest({ url: req.url });
  const headers = req.headers;
  return {
    id,
    method: req.method,
    url,
    remoteAddress: req.socket?.remoteAddress,
    ...(headers['content-length'] !== undefined ? { contentLength: headers['content-length'] } : {}),
    ...(headers['user-agent'] !== undefined ? { userAgent: headers['user-agent'] } : {}),
  };
}
