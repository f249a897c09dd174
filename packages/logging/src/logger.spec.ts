import { afterAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, waitFor } from '@shepherd/testing';
import { createLogger, withFields, logFilePath } from './logger';
import { redactRequest } from './redact';

const root = tempDir('logging');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A destination that keeps each JSON line, parsed. */
function capture(): { lines: Record<string, unknown>[]; write: (line: string) => void } {
  const lines: Record<string, unknown>[] = [];
  return { lines, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) };
}

describe('createLogger', () => {
  it('binds the service and the given fields and honours the level', () => {
    const out = capture();
    const log = createLogger({ service: 'worker', level: 'debug', bindings: { sheepId: 'gpu0' }, destination: out });
    log.trace('hidden');
    log.debug({ jobId: 'j1' }, 'taken');
    expect(out.lines).toEqual([expect.objectContaining({ service: 'worker', sheepId: 'gpu0', jobId: 'j1', msg: 'taken', level: 20 })]);
  });

  it('blanks credential headers of a request and tokens in its url and query', () => {
    const out = capture();
    const log = createLogger({ service: 'gateway', level: 'info', destination: out, serializers: { req: redactRequest } });
    log.info(
      {
        req: {
          method: 'GET',
          url: '/jobs/j1/result?token=s3cret&format=json',
          query: { token: 's3cret', format: 'json' },
          headers: {
            authorization: 'Bearer s3cret',
            'proxy-authorization': 'Basic s3cret',
            'x-api-key': 's3cret',
            cookie: 'session=s3cret',
            accept: 'application/json',
          },
        },
      },
      'request completed',
    );
    const [line] = out.lines;
    expect(line?.req).toEqual({
      method: 'GET',
      url: '/jobs/j1/result?token=[REDACTED]&format=json',
      query: { token: '[REDACTED]', format: 'json' },
      headers: {
        authorization: '[REDACTED]',
        'proxy-authorization': '[REDACTED]',
        'x-api-key': '[REDACTED]',
        cookie: '[REDACTED]',
        accept: 'application/json',
      },
    });
    expect(JSON.stringify(out.lines)).not.toContain('s3cret');
  });

  it('blanks passwords, storage keys and tokens up to two levels down', () => {
    const out = capture();
    const log = createLogger({ service: 'worker', level: 'info', destination: out });
    log.info(
      {
        token: 't0',
        registry: { username: 'me', password: 'p1' },
        config: { storage: { accessKey: 'a2', secretKey: 's2', bucket: 'b' } },
        s3: { access_key: 'a1', secret_key: 's1' },
        runner: { apiKey: 'k1', access_token: 'k2' },
      },
      'started',
    );
    const [line] = out.lines;
    expect(line).toMatchObject({
      token: '[REDACTED]',
      registry: { username: 'me', password: '[REDACTED]' },
      config: { storage: { accessKey: '[REDACTED]', secretKey: '[REDACTED]', bucket: 'b' } },
      s3: { access_key: '[REDACTED]', secret_key: '[REDACTED]' },
      runner: { apiKey: '[REDACTED]', access_token: '[REDACTED]' },
    });
  });

  it('also writes to <directory>/<service>-<suffix>.log, creating the directory', async () => {
    const directory = join(root, 'nested', 'logs');
    const out = capture();
    const log = createLogger({ service: 'worker', level: 'debug', directory, fileSuffix: 'gpu0', bindings: { sheepId: 'gpu0' }, destination: out });
    log.debug({ secretKey: 'hidden' }, 'to both');
    const file = join(directory, 'worker-gpu0.log');
    expect(logFilePath(directory, 'worker', 'gpu0')).toBe(file);
    const lines = await waitFor(() => {
      if (!existsSync(file)) return null;
      const text = readFileSync(file, 'utf8');
      return text.endsWith('\n') ? text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) : null;
    }, 5000, 'the log file');
    expect(lines).toEqual([expect.objectContaining({ service: 'worker', sheepId: 'gpu0', msg: 'to both', secretKey: '[REDACTED]' })]);
    expect(out.lines).toEqual(lines);
  });

  it('names the file after the service alone without a suffix and keeps a suffix one file name', () => {
    expect(logFilePath('/var/log/shepherd', 'gateway')).toBe('/var/log/shepherd/gateway.log');
    expect(logFilePath('/logs', 'worker', '../gpu 0')).toBe('/logs/worker-.._gpu_0.log');
  });

  it('adds the fields of withFields to every line, its children’s included, redacted like any line', () => {
    const out = capture();
    const log = withFields(createLogger({ service: 'worker', level: 'info', destination: out }), { jobId: 'j1' });
    log.info({ token: 's3cret' }, 'one');
    log.child({ sheepId: 's1' }).warn({ jobId: 'j2' }, 'two');
    log.debug('below the level');
    expect(out.lines).toEqual([
      expect.objectContaining({ jobId: 'j1', token: '[REDACTED]', msg: 'one' }),
      expect.objectContaining({ jobId: 'j2', sheepId: 's1', msg: 'two' }),
    ]);
  });
});
