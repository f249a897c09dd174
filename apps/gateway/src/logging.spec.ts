import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pino from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import { accessLog, gatewayLogger } from './logging';

// The gateway's access log, on a plain node:http server.

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

describe('the gateway request log', () => {
  it('carries the request id and no credential from headers or the query', async () => {
    const lines: Record<string, unknown>[] = [];
    const config = { logging: { level: 'info' } } as ShepherdConfig;
    const middleware = accessLog(gatewayLogger(config, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) }));
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
    expect(lines[0]).toMatchObject({ res: { statusCode: 200 }, msg: 'request completed', level: 30 });
  });

  it('binds the request id to every line logged through the request’s logger, redacted as any line', async () => {
    const lines: Record<string, unknown>[] = [];
    const config = { logging: { level: 'warn' } } as ShepherdConfig;
    const middleware = accessLog(gatewayLogger(config, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) }));
    server = createServer((req, res) =>
      middleware(req, res, () => {
        const log = (req as typeof req & { log: pino.Logger }).log;
        log.warn({ jobId: 'j1', token: 's3cret' }, 'inside');
        log.child({ sheepId: 's1' }).error('deeper');
        log.info('below the level');
        res.end('ok');
      }),
    );
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-request-id': 'r-2' } });
    expect(lines).toEqual([
      expect.objectContaining({ reqId: 'r-2', jobId: 'j1', token: '[REDACTED]', msg: 'inside', level: 40 }),
      expect.objectContaining({ reqId: 'r-2', sheepId: 's1', msg: 'deeper', level: 50 }),
    ]);
  });

  it('logs refusals at warn and server errors at error, a new id when the client sends none, nothing below the level', async () => {
    const lines: Record<string, unknown>[] = [];
    const config = { logging: { level: 'warn' } } as ShepherdConfig;
    const middleware = accessLog(gatewayLogger(config, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) }));
    server = createServer((req, res) =>
      middleware(req, res, () => {
        res.statusCode = Number(req.url?.slice(1));
        res.end();
      }),
    );
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const ids: Array<string | null> = [];
    for (const status of [200, 404, 503]) ids.push((await fetch(`http://127.0.0.1:${port}/${status}`)).headers.get('x-request-id'));
    expect(ids.every((id) => typeof id === 'string' && id.length === 36)).toBe(true);
    expect(lines.map((line) => [(line.res as { statusCode: number }).statusCode, line.level])).toEqual([
      [404, 40],
      [503, 50],
    ]);
    expect((lines[0]?.req as { id: string }).id).toBe(ids[1]);
  });
});
