import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { uniqueId } from '@shepherd/testing';
import { model, startGateway, storageSection, type Harness } from './harness';

const secrets = {
  alice: 'alice-secret-token-0001',
  bob: 'bob-secret-token-000002',
  reader: 'reader-secret-token-003',
  admin: 'admin-secret-token-0004',
  scraper: 'scraper-secret-token-05',
  limited: 'limited-secret-token-06',
};
const sha = (secret: string) => createHash('sha256').update(secret).digest('hex');

function as(who: keyof typeof secrets | null, init: RequestInit = {}): RequestInit {
  const headers = new Headers(init.headers);
  if (who) headers.set('authorization', `Bearer ${secrets[who]}`);
  return { ...init, headers };
}

function submit(url: string, who: keyof typeof secrets | null, jobId: string): Promise<Response> {
  return fetch(`${url}/start-job`, as(who, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ job_id: jobId, model, payload: '{}' }) }));
}

describe('with API tokens', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({
      storage: storageSection('filesystem'),
      auth: {
        tokens: [
          { name: 'alice', token_sha256: sha(secrets.alice), scopes: ['submit', 'read'] },
          { name: 'bob', token: secrets.bob, scopes: ['submit', 'read'] },
          { name: 'reader', token_sha256: sha(secrets.reader), scopes: ['read'] },
          { name: 'admin', token_sha256: sha(secrets.admin), scopes: ['admin'] },
          { name: 'scraper', token_sha256: sha(secrets.scraper), scopes: ['metrics'] },
          { name: 'limited', token_sha256: sha(secrets.limited), scopes: ['submit', 'read'], rate_limit: 3, max_waiting_jobs: 2 },
        ],
      },
    });
  });
  afterAll(async () => gw.close());

  it('refuses every route but /health without a known token, walking the route table', async () => {
    const router = (gw.app.getHttpAdapter().getInstance() as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router;
    // OPTIONS is CORS preflight, answered before auth with no data; fetch cannot send CONNECT/TRACE.
    const methods = ['get', 'post', 'put', 'delete', 'patch', 'head'];
    const routes = router.stack.flatMap((layer) =>
      layer.route ? Object.keys(layer.route.methods).filter((m) => methods.includes(m)).map((method) => ({ method, path: layer.route!.path })) : [],
    );
    expect(routes.length).toBeGreaterThan(8);
    const extra = [{ method: 'get', path: '/docs' }, { method: 'get', path: '/docs-json' }, { method: 'get', path: '/admin/queues' }, { method: 'get', path: '/admin/queues/api/queues' }];
    for (const { method, path } of [...routes, ...extra]) {
      const concrete = path.replace(/[{}]/g, '').replace(/:id/g, 'job-1').replace(/\*\w+/g, 'a/b');
      const variants: Array<Record<string, string>> = [{}, { authorization: 'Bearer not-a-known-token' }, { authorization: `Basic ${Buffer.from(`x:${secrets.bob}x`).toString('base64')}` }];
      for (const headers of variants) {
        const response = await fetch(`${gw.url}${concrete}`, { method: method.toUpperCase(), headers });
        if (concrete === '/health') expect(response.status).toBe(200);
        else expect({ method, concrete, status: response.status }).toEqual({ method, concrete, status: 401 });
      }
    }
  });

  it('answers 403 to a token without the scope, and lets the scope in', async () => {
    const jobId = uniqueId('job');
    expect((await submit(gw.url, 'reader', jobId)).status).toBe(403);
    expect((await fetch(`${gw.url}/metrics`, as('alice'))).status).toBe(403);
    expect((await fetch(`${gw.url}/metrics`, as('scraper'))).status).toBe(200);
    expect((await fetch(`${gw.url}/status`, as('scraper'))).status).toBe(403);
    expect((await fetch(`${gw.url}/docs-json`, as('reader'))).status).toBe(200);
    expect((await fetch(`${gw.url}/docs-json`, as('scraper'))).status).toBe(403);
    expect((await submit(gw.url, 'alice', jobId)).status).toBe(200);
  });

  it('lets a token read its own jobs only; admin reads all; another token gets 404', async () => {
    const jobId = uniqueId('job');
    expect((await submit(gw.url, 'alice', jobId)).status).toBe(200);
    const own = await fetch(`${gw.url}/jobs/${jobId}/status`, as('alice'));
    expect(own.status).toBe(200);
    expect(await own.json()).not.toHaveProperty('submitted_by');
    for (const route of ['status', 'wait_ready?timeout=0', 'result', 'input']) {
      expect((await fetch(`${gw.url}/jobs/${jobId}/${route}`, as('bob'))).status).toBe(404);
      expect((await fetch(`${gw.url}/jobs/${jobId}/${route}`, as('reader'))).status).toBe(404);
    }
    expect((await fetch(`${gw.url}/jobs/${jobId}/input`, as('alice'))).status).toBe(200);
    expect((await fetch(`${gw.url}/jobs/${jobId}/status`, as('admin'))).status).toBe(200);
    // Bob cannot take the id either: it exists.
    expect((await submit(gw.url, 'bob', jobId)).status).toBe(409);
    expect((await gw.statuses.read(jobId))?.submitted_by).toBe('alice');
  });

  it('opens Bull Board to admin tokens only, read-only, with no CORS headers', async () => {
    const basic = (secret: string) => ({ authorization: `Basic ${Buffer.from(`any:${secret}`).toString('base64')}`, origin: 'http://evil.example' });
    const denied = await fetch(`${gw.url}/admin/queues`, { headers: basic(secrets.alice) });
    expect(denied.status).toBe(403);
    const page = await fetch(`${gw.url}/admin/queues`, { headers: basic(secrets.admin) });
    expect(page.status).toBe(200);
    expect(page.headers.get('access-control-allow-origin')).toBeNull();
    const api = await fetch(`${gw.url}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${secrets.admin}` } });
    expect(api.status).toBe(200);
    const write = await fetch(`${gw.url}/admin/queues/api/queues/pause`, { method: 'PUT', headers: basic(secrets.admin) });
    expect(write.status).toBe(405);
    // The job API keeps the original's open CORS.
    const job = await fetch(`${gw.url}/status`, { headers: { ...as('alice').headers as Headers, origin: 'http://app.example' } as never });
    expect(job.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('limits requests per second and jobs waiting per token with 429 and Retry-After', async () => {
    const first = uniqueId('job');
    const second = uniqueId('job');
    expect((await submit(gw.url, 'limited', first)).status).toBe(200);
    expect((await submit(gw.url, 'limited', second)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the rate refills
    const third = await submit(gw.url, 'limited', uniqueId('job'));
    expect(third.status).toBe(429);
    expect((await third.json()).message).toMatch(/2 jobs waiting/);
    // One starts: room for another.
    await gw.statuses.write(first, { status: 'processing', model });
    expect((await submit(gw.url, 'limited', uniqueId('job'))).status).toBe(200);

    const answers = await Promise.all(Array.from({ length: 6 }, () => fetch(`${gw.url}/status`, as('limited'))));
    const limited = answers.filter((answer) => answer.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('never writes a token into the log or an answer', async () => {
    const answer = await fetch(`${gw.url}/status?token=${secrets.alice}`, as('alice'));
    expect(JSON.stringify(await answer.json())).not.toContain(secrets.alice);
  });
});
