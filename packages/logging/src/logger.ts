import { hostname } from 'node:os';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger, type LoggerOptions as PinoOptions } from 'pino';
import { REDACTED, REDACT_PATHS } from './redact';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface CreateLoggerOptions {
  /** Bound to every line as `service`, and names the log file. */
  service: string;
  level: LogLevel;
  /** When set, lines also go to `<directory>/<service>[-<fileSuffix>].log`; the directory is created. Default: stdout only. */
  directory?: string;
  /** Tells apart the files of several processes of one service, e.g. the sheep id: `worker-<sheepId>.log`. Default: none. */
  fileSuffix?: string;
  /** Fields bound to every line, e.g. `{ sheepId }`. Default: none. */
  bindings?: Record<string, unknown>;
  /** Where the stdout lines go instead (tests). Default: file descriptor 1. */
  destination?: DestinationStream;
  /** Serializers added to pino's, e.g. for a request type of the service's own. Default: none. */
  serializers?: PinoOptions['serializers'];
}

/** The file `createLogger` writes to in `directory`. */
export function logFilePath(directory: string, service: string, fileSuffix?: string): string {
  // A suffix comes from an id (a sheep's); keep it one safe file name.
  const suffix = fileSuffix ? `-${fileSuffix.replace(/[^\w.-]/g, '_')}` : '';
  return join(directory, `${service}${suffix}.log`);
}

/**
 * The pino logger of a service: JSON lines with REDACT_PATHS blanked, to
 * stdout and, when `directory` is given, to a file there too. The file is
 * written asynchronously; pino flushes it when the process exits.
 */
export function createLogger(options: CreateLoggerOptions): Logger {
  const { service, level } = options;
  const stdout = options.destination ?? pino.destination(1);
  let stream: DestinationStream = stdout;
  if (options.directory) {
    const file = pino.destination({ dest: logFilePath(options.directory, service, options.fileSuffix), mkdir: true, sync: false });
    // multistream drops lines below each entry's level ('info' when unset): give both the logger's.
    const streamLevel = level === 'silent' ? 'fatal' : level;
    stream = pino.multistream([
      { level: streamLevel, stream: stdout },
      { level: streamLevel, stream: file },
    ]);
  }
  return pino(
    {
      level,
      base: { pid: process.pid, hostname: hostname(), service, ...options.bindings },
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      serializers: options.serializers,
    },
    stream,
  );
}

/**
 * A logger whose lines carry `fields`, added as each line is written. Cheap
 * to make where `logger.child(fields)` is not: a child serializes and
 * redacts its bindings at once (17 µs here, and garbage), whether it logs
 * a line or not; per job or per request, most log none.
 */
export function withFields(logger: Logger, fields: Record<string, unknown>): Logger {
  return logger.child({}, { formatters: { log: (line: object) => ({ ...fields, ...line }) } });
}
