import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pinoHttp, { type Options } from 'pino-http';
import type { ShepherdConfig } from '@shepherd/config';
import { loggerParams } from './logging';

// The request log the gateway's LoggerModule writes, through pino-http itself.

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

describe('the gateway request log', () => {
  it('carries the request id and no credential from headers or the query', async () => {
    const lines: Record<string, unknown>[] = [];
    const config = { logging: { level: 'info' } } as ShepherdConfig;
    const params = loggerParams(config, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const middleware = pinoHttp(params.pinoHttp as Options);
    server = createServer((req, res) => middleware(req, res, () => res.end('ok')));
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/jobs/j1/result?Token=s3cret&page=2`, {
      headers: { authorization: 'Bearer s3cret', 'x-api-key': 's3cret', cookie: 'sid=s3cret', 'x-request-id': 'r-1' },
    });
    expect(response.headers.get('x-request-id')).toBe('r-1');
    expect(lines).toEqual([
      expect.objectContaining({
        service: 'gateway',
        req: expect.objectContaining({
          id: 'r-1',
          method: 'GET',
          url: '/jobs/j1/result?Token=[REDACTED]&page=2',
        }),
      }),
    ]);
    expect(JSON.stringify(lines)).not.toContain('s3cret');
    expect(lines[0]?.req).not.toHaveProperty('headers'); // a lean line: no header can carry a credential into it
  });
});
