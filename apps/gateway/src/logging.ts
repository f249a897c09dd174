import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import pino from 'pino';
import type { Params } from 'nestjs-pino';
import type { ShepherdConfig } from '@shepherd/config';

/** Paths pino blanks in every line: credentials never reach a log. */
export const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  '*.password',
  '*.secret_key',
  '*.secretKey',
  '*.access_key',
  '*.accessKey',
];

/**
 * JSON lines to stdout, and to `<logging_directory>/gateway.log` when the
 * config names a directory. Each request gets an id (the client's
 * `X-Request-Id` when it sends one) that every line of that request carries.
 */
export function loggerParams(config: ShepherdConfig, destination?: pino.DestinationStream): Params {
  const streams: pino.StreamEntry[] = [{ stream: destination ?? pino.destination(1) }];
  if (config.logging.directory) {
    streams.push({ stream: pino.destination({ dest: join(config.logging.directory, 'gateway.log'), mkdir: true, sync: false }) });
  }
  return {
    pinoHttp: {
      level: config.logging.level,
      redact: REDACT,
      genReqId: (req: IncomingMessage, res: ServerResponse) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
        res.setHeader('x-request-id', id);
        return id;
      },
      customProps: () => ({ service: 'gateway' }),
      stream: pino.multistream(streams),
    },
  };
}
