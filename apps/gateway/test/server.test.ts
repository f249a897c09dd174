import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteKeys, freePort, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { startGateway, storageSection, type Harness } from './harness';

describe('the rest of the API', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem') });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('lists every configured sheep as not running while no worker beats', async () => {
    const response = await fetch(`${gw.url}/status`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      sheep: {
        sheep_a: { running: false, model: null, request: null, waiting: 0 },
        sheep_b: { running: false, model: null, request: null, waiting: 0 },
      },
      models: {},
    });
  });

  it('shows a sheep as running from the state its worker publishes', async () => {
    const { SheepRegistry } = await import('@shepherd/queue');
    const registry = gw.app.get(SheepRegistry);
    await registry.publish('sheep_a', { model: { name: 'm', version: '1' }, request: 'job-1', heartbeatAt: new Date().toISOString() }, 5000);
    const { sheep } = await (await fetch(`${gw.url}/status`)).json();
    expect(sheep.sheep_a).toEqual({ running: true, model: { name: 'm', version: '1' }, request: 'job-1', waiting: 0 });
  });

  it('serves the OpenAPI document and Swagger UI at /docs', async () => {
    const ui = await fetch(`${gw.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger');
    const document = await (await fetch(`${gw.url}/docs-json`)).json();
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(['/start-job', '/jobs/{id}/status', '/jobs/{id}/wait_ready', '/jobs/{id}/inputs/{path}', '/status']),
    );
  });

  it('allows cross-origin requests like the original', async () => {
    const response = await fetch(`${gw.url}/status`, { headers: { origin: 'http://example.test' } });
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('answers unknown routes with a JSON 404', async () => {
    const response = await fetch(`${gw.url}/nope`);
    expect(response.status).toBe(404);
    expect((await response.json()).message).toMatch(/Cannot GET \/nope/);
  });
});

describe('the shepherd command', () => {
  it('starts from a config file with -c, -h and -p, logs JSON with request ids to the log directory', async () => {
    const dir = tempDir('shepherd-cli');
    const prefix = uniqueId('cli');
    const config = join(dir, 'shepherd.yml');
    writeFileSync(
      config,
      `storage: {root: ${join(dir, 'storage')}}\nredis: {url: ${REDIS_URL}, prefix: ${prefix}}\nlogging: {level: info, logging_directory: ${join(dir, 'logs')}}\nsheep: {}\n`,
    );
    const port = await freePort();
    const child = spawn(process.execPath, [join(__dirname, '../dist/cli.js'), '-c', config, '-h', '127.0.0.1', '-p', String(port)], {
      stdio: 'ignore',
    });
    try {
      await waitFor(() => fetch(`http://127.0.0.1:${port}/status`).then((r) => r.ok, () => false), 20_000, 'the gateway');
      const response = await fetch(`http://127.0.0.1:${port}/status`, { headers: { 'x-request-id': 'req-42' } });
      expect(await response.json()).toEqual({ sheep: {}, models: {} });
      expect(response.headers.get('x-request-id')).toBe('req-42');
      const line = await waitFor(
        () => readFileSync(join(dir, 'logs/gateway.log'), 'utf8').split('\n').find((l) => l.includes('req-42')),
        5000,
        'the request log line',
      );
      expect(JSON.parse(line ?? '')).toMatchObject({ req: { id: 'req-42', url: '/status' }, res: { statusCode: 200 } });
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      await deleteKeys(`${prefix}:`);
    }
  });

  it('exits with 2 and the config error for an invalid config', async () => {
    const child = spawn(process.execPath, [join(__dirname, '../dist/cli.js'), '-c', join(__dirname, '../../../examples/configs/invalid.yml')]);
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toContain('sheep.bad_sheep.port: expected number, found "not-a-port"');
  });
});
