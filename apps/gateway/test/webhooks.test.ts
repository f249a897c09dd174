import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Queue } from 'bullmq';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { jobStatus, WEBHOOK_QUEUE, type JobStatus } from '@shepherd/contracts';
import { RedisKeys, WebhookCounts, WebhookOutbox, type WebhookOutcome } from '@shepherd/queue';
import { freePort, uniqueId, waitFor } from '@shepherd/testing';
import { checkTarget, type HostLookup } from '../src/webhooks/webhook-target';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/** What a receiver checks, written from the Standard Webhooks spec (not from our sender). */
function verified(headers: IncomingHttpHeaders, body: string): boolean {
  const id = String(headers['webhook-id'] ?? '');
  const timestamp = String(headers['webhook-timestamp'] ?? '');
  const signatures = String(headers['webhook-signature'] ?? '').split(' ');
  if (!id || !/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.some((entry) => {
    const [version, signature = ''] = entry.split(',');
    const given = Buffer.from(signature, 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  event: string;
  status: JobStatus & { job_id: string };
  verified: boolean;
}

/** A real HTTP receiver: records every call; `failures` says how many calls of a job to answer 500 first. */
class Receiver {
  readonly calls: Received[] = [];
  readonly failures = new Map<string, number>();
  private server?: Server;
  url = '';

  async start(): Promise<void> {
    const port = await freePort(); // never one of fetch's "bad ports"
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const status = JSON.parse(body) as Received['status'];
        this.calls.push({ headers: req.headers, body, event: String(req.headers['x-shepherd-event']), status, verified: verified(req.headers, body) });
        const left = this.failures.get(status.job_id) ?? 0;
        if (left > 0) this.failures.set(status.job_id, left - 1);
        res.writeHead(left > 0 ? 500 : 204).end();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${port}/hook`;
  }

  of(jobId: string, event?: string): Received[] {
    return this.calls.filter((call) => call.status.job_id === jobId && (!event || call.event === event));
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

describe('webhooks', () => {
  let gw: Harness;
  let receiver: Receiver;
  let counts: WebhookCounts;
  let outbox: WebhookOutbox;

  beforeAll(async () => {
    receiver = new Receiver();
    await receiver.start();
    // retry_for 1s: tries 31 ms, 62 ms, ... apart (see retryPlan), so retries are quick here.
    gw = await startGateway({ storage: storageSection('filesystem'), webhooks: { secret: SECRET, allow_hosts: ['127.0.0.1'], retry_for: '1s', timeout: '2s' } });
    const keys = new RedisKeys(gw.config.redis.prefix);
    counts = new WebhookCounts(gw.redis, keys);
    // The test writes statuses as a worker does, so it attaches an outbox as a worker does.
    outbox = new WebhookOutbox(gw.redis, keys, { retryForMs: gw.config.webhooks.retryForMs }).attach(gw.statuses);
  });
  afterAll(async () => {
    await outbox.close();
    await gw.close();
    await receiver.stop();
  });

  async function submit(body: Record<string, unknown>): Promise<string> {
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'p', ...body });
    expect(response.status).toBe(200);
    return jobId;
  }

  /** The delivery counts once `ready` holds (they only grow). */
  async function countsWhen(ready: (now: Record<WebhookOutcome, number>) => boolean, what: string): Promise<Record<WebhookOutcome, number>> {
    await waitFor(async () => ready(await counts.read()), 15_000, what);
    return counts.read();
  }

  /** queued -> processing -> (progress) -> done, as a worker writes it. */
  async function run(jobId: string, progressCalls = 0): Promise<void> {
    const queued = await gw.statuses.read(jobId);
    await gw.statuses.write(jobId, jobStatus.processing({ model, enqueuedAt: queued?.enqueued_at ?? null }));
    for (let i = 1; i <= progressCalls; i++) expect(await gw.statuses.progress(jobId, i / progressCalls, `step ${i}`)).toBe(true);
    const processing = await gw.statuses.read(jobId);
    await gw.statuses.write(jobId, jobStatus.done({ model, enqueuedAt: processing?.enqueued_at ?? null, startedAt: processing?.processing_started_at ?? null }));
  }

  it('signs the completed status the Standard Webhooks way and retries a failing receiver with the same webhook-id', async () => {
    const before = await counts.read();
    const jobId = await submit({ webhook: receiver.url });
    receiver.failures.set(jobId, 2);
    await run(jobId);

    await waitFor(() => receiver.of(jobId).length >= 3, 10_000, 'the third try');
    const calls = receiver.of(jobId);
    expect(calls.map((call) => call.event)).toEqual(['completed', 'completed', 'completed']);
    expect(calls.every((call) => call.verified)).toBe(true);
    expect(new Set(calls.map((call) => call.headers['webhook-id'])).size).toBe(1);
    expect(calls[0]?.headers['content-type']).toBe('application/json');
    const [first] = calls;
    expect(first?.status).toMatchObject({ job_id: jobId, status: 'done', model });
    expect(first?.status).not.toHaveProperty('webhook');
    expect(first?.status).not.toHaveProperty('webhook_events');
    // A tampered body fails the check.
    expect(verified(first?.headers ?? {}, (first?.body ?? '').replace('done', 'fail'))).toBe(false);

    const after = await countsWhen((now) => now.delivered > before.delivered, 'the delivery');
    expect(after.retried - before.retried).toBe(2);
    expect(after.delivered - before.delivered).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.of(jobId)).toHaveLength(3); // delivered once: no more tries
  });

  it('sends start, progress at most once per 500 ms, and completed when asked', async () => {
    const jobId = await submit({ webhook: receiver.url, webhook_events: ['start', 'progress', 'completed'] });
    const began = Date.now();
    await run(jobId, 10);
    expect(Date.now() - began).toBeLessThan(1000);

    await waitFor(() => receiver.of(jobId, 'start').length && receiver.of(jobId, 'completed').length && receiver.of(jobId, 'progress').length, 10_000, 'the three events');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.of(jobId, 'start')).toHaveLength(1);
    expect(receiver.of(jobId, 'start')[0]?.status.status).toBe('processing');
    const progress = receiver.of(jobId, 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThanOrEqual(2);
    expect(progress[0]?.status).toMatchObject({ status: 'processing', progress: expect.any(Number) });
    expect(receiver.of(jobId, 'completed')).toHaveLength(1);
    expect(receiver.of(jobId).every((call) => call.verified)).toBe(true);
    expect(new Set(receiver.of(jobId).map((call) => call.headers['webhook-id'])).size).toBe(receiver.of(jobId).length);
  });

  it('answers 400 at submit, saying why, for a host that is not allowed', async () => {
    const refused = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'p', webhook: 'http://10.1.2.3/hook' });
    expect(refused.status).toBe(400);
    expect((await refused.json()).message).toMatch(/webhook: the host `10\.1\.2\.3` is not in webhooks\.allow_hosts/);

    const noUrl = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'p', webhook_events: ['start'] });
    expect(noUrl.status).toBe(400);
    expect((await noUrl.json()).message).toMatch(/webhook_events: needs a `webhook` URL/);

    const notHttp = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'p', webhook: 'file:///etc/passwd' });
    expect(notHttp.status).toBe(400);
    expect((await notHttp.json()).message).toMatch(/webhook/);
  });

  it('refuses private and loopback hosts at submit unless listed, and webhooks without a secret', async () => {
    const open = await startGateway({ storage: storageSection('filesystem'), webhooks: { secret: 'a-secret-of-at-least-24-characters' } });
    const unsigned = await startGateway({ storage: storageSection('filesystem') });
    try {
      for (const [url, reason] of [
        ['http://localhost/', /the host `localhost` resolves to (127\.0\.0\.1|::1), a private, loopback or link-local address/],
        ['http://10.1.2.3/', /the host `10\.1\.2\.3` is a private, loopback or link-local address/],
        ['http://[::1]:8080/', /the host `::1` is a private/],
        ['http://169.254.169.254/latest/meta-data', /169\.254\.169\.254/],
      ] as const) {
        const response = await postJson(`${open.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'p', webhook: url });
        expect(response.status).toBe(400);
        expect((await response.json()).message).toMatch(reason);
      }
      const response = await postJson(`${unsigned.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'p', webhook: 'https://example.com/hook' });
      expect(response.status).toBe(400);
      expect((await response.json()).message).toMatch(/webhooks are not enabled on this server \(no webhooks\.secret/);
    } finally {
      await open.close();
      await unsigned.close();
    }
  });

  it('checks the host again at delivery: a refused one is not sent, not retried, and counted', async () => {
    const before = await counts.read();
    const queue = new Queue(WEBHOOK_QUEUE, { connection: gw.redis, prefix: gw.config.redis.prefix });
    try {
      const jobId = uniqueId('job');
      const status = { ...jobStatus.done({ model }), job_id: jobId };
      // As if the host had been allowed at submit and the config or DNS changed since.
      const job = await queue.add('completed', { jobId, url: 'http://10.1.2.3/hook', eventType: 'completed', status, messageId: `${jobId}@x` }, { jobId: `${jobId}@x`, attempts: 5 });
      await waitFor(async () => (await job.isFailed()) || null, 10_000, 'the refused delivery');
      const failed = await queue.getJob(`${jobId}@x`);
      expect(failed?.failedReason).toMatch(/webhook refused: the host `10\.1\.2\.3` is not in webhooks\.allow_hosts/);
      expect(failed?.attemptsMade).toBe(1);
      expect((await counts.read()).refused - before.refused).toBe(1);
    } finally {
      await queue.close();
    }

    // The delivery-side check itself, with DNS answers of our choosing: a name that now resolves privately.
    const resolvesTo =
      (address: string): HostLookup =>
      async () => [{ address, family: address.includes(':') ? 6 : 4 }];
    expect(await checkTarget('https://hooks.example.com/x', [], resolvesTo('10.0.0.5'))).toMatchObject({ ok: false, temporary: false, reason: expect.stringMatching(/resolves to 10\.0\.0\.5/) });
    expect(await checkTarget('https://hooks.example.com/x', [], resolvesTo('fd00::5'))).toMatchObject({ ok: false });
    expect(await checkTarget('https://hooks.example.com/x', [], resolvesTo('::ffff:192.168.1.1'))).toMatchObject({ ok: false });
    expect(await checkTarget('https://hooks.example.com/x', [], resolvesTo('100.64.0.1'))).toMatchObject({ ok: false });
    expect(await checkTarget('https://hooks.example.com/x', [], resolvesTo('93.184.216.34'))).toMatchObject({ ok: true, address: { address: '93.184.216.34', family: 4 } });
    expect(await checkTarget('https://hooks.example.com/x', ['hooks.example.com'], resolvesTo('10.0.0.5'))).toMatchObject({ ok: true });
    expect(await checkTarget('http://[::ffff:127.0.0.1]/', [])).toMatchObject({ ok: false });
    expect(await checkTarget('http://0x7f000001/', [])).toMatchObject({ ok: false }); // 127.0.0.1 spelled otherwise
    expect(await checkTarget('http://0.0.0.0:80/', [])).toMatchObject({ ok: false });
    const gone: HostLookup = async () => {
      throw Object.assign(new Error('no such host'), { code: 'ENOTFOUND' });
    };
    expect(await checkTarget('https://gone.example.com/', [], gone)).toMatchObject({ ok: false, temporary: true });
  });

  it('never delays or fails a job when its receiver is down; the delivery fails after retry_for', async () => {
    const before = await counts.read();
    const downPort = await freePort(); // nothing listens there
    const jobId = await submit({ webhook: `http://127.0.0.1:${downPort}/hook`, webhook_events: ['start', 'progress', 'completed'] });
    const began = Date.now();
    await run(jobId, 3);
    expect(Date.now() - began).toBeLessThan(1000);
    expect((await (await fetch(`${gw.url}/jobs/${jobId}/status`)).json()).status).toBe('done');

    // start, progress, completed: each given up.
    const after = await countsWhen((now) => now.failed - before.failed >= 3, 'the deliveries to give up');
    expect(after.retried - before.retried).toBeGreaterThanOrEqual(3);

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    for (const outcome of ['delivered', 'retried', 'failed', 'refused'] satisfies WebhookOutcome[]) {
      expect(metrics).toMatch(new RegExp(`shepherd_webhook_deliveries_total\\{outcome="${outcome}"\\} [1-9]`));
    }
  });
});
