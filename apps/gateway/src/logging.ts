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
      serializers: { req: redactRequest },
      genReqId: (req: IncomingMessage, res: ServerResponse) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
        res.setHeader('x-request-id', id);
        return id;
      },
    },
  };
}
