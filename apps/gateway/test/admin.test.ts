import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { MetricsStore, RedisKeys } from '@shepherd/queue';
import { startS3Server, uniqueId, waitFor, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

describe('health, readiness and metrics', () => {
  let s3: S3ServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    s3 = await startS3Server();
    gw = await startGateway({ storage: storageSection('s3-bucket-per-job', s3) });
  });
  afterAll(async () => {
    await gw.close();
    await s3.stop().catch(() => undefined);
  });

  it('answers /health while the process lives', async () => {
    expect(await (await fetch(`${gw.url}/health`)).json()).toEqual({ status: 'ok' });
  });

  it('is ready when Redis and storage answer, lists the sheep, and says which is down', async () => {
    const ready = await fetch(`${gw.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, redis: 'up', storage: 'up', sheep: { sheep_a: false, sheep_b: false } });

    const { port } = s3;
    await s3.stop();
    const down = await fetch(`${gw.url}/ready`);
    expect(down.status).toBe(503);
    const body = await down.json();
    expect(body).toMatchObject({ ready: false, redis: 'up' });
    expect(body.storage).toBe('down'); // why goes to the log, not to callers
    // A fresh directory: s3rver answers ListBuckets with 500 on a directory it held before.
    s3 = await startS3Server({ port });
    await waitFor(async () => (await fetch(`${gw.url}/ready`)).status === 200, 5000, 'ready again');
  });

  it('exposes Prometheus metrics: submissions, queue depth, sheep up, worker counters', async () => {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
    const workerMetrics = new MetricsStore(gw.redis, new RedisKeys(gw.config.redis.prefix));
    workerMetrics.jobFinished('sheep_a', model, 'done');
    workerMetrics.modelLoaded('sheep_a');
    workerMetrics.observe('runner', 'sheep_a', 0.02);
    workerMetrics.observe('runner', 'sheep_a', 3);
    await waitFor(async () => (await workerMetrics.finished()).length > 0, 5000, 'the counter');
    const response = await fetch(`${gw.url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toContain('shepherd_jobs_submitted_total{model="echo:v1"} 1');
    expect(text).toContain('shepherd_queue_jobs{queue="model.echo@v1",state="waiting"} 1');
    expect(text).toContain('shepherd_sheep_up{sheep="sheep_a"} 0');
    expect(text).toContain('shepherd_jobs_finished_total{sheep="sheep_a",model="echo:v1",status="done"} 1');
    expect(text).toContain('shepherd_model_loads_total{sheep="sheep_a"} 1');
    expect(text).toContain('# TYPE shepherd_job_stage_seconds histogram');
    expect(text).toContain('shepherd_job_stage_seconds_bucket{stage="runner",sheep="sheep_a",le="0.01"} 0');
    expect(text).toContain('shepherd_job_stage_seconds_bucket{stage="runner",sheep="sheep_a",le="0.025"} 1');
    expect(text).toContain('shepherd_job_stage_seconds_bucket{stage="runner",sheep="sheep_a",le="+Inf"} 2');
    expect(text).toContain('shepherd_job_stage_seconds_count{stage="runner",sheep="sheep_a"} 2');
    expect(text).toMatch(/shepherd_job_stage_seconds_sum\{stage="runner",sheep="sheep_a"\} 3\.02/);
  });
});

describe('Bull Board', () => {
  it('shows every queue, including model queues created while running', async () => {
    const gw = await startGateway({ storage: storageSection('filesystem') });
    try {
      const page = await fetch(`${gw.url}/admin/queues`);
      expect(page.status).toBe(200);
      const html = await page.text();
      const asset = /src="([^"]+\.js)"/.exec(html)?.[1];
      expect(asset).toBeDefined();
      expect((await fetch(new URL(asset as string, `${gw.url}/admin/queues/`))).status).toBe(200);

      await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model: { name: 'fresh', version: 'v7' }, payload: 'x' });
      await new Promise((r) => setTimeout(r, 2100)); // the board refreshes its list every 2 s
      const api = await (await fetch(`${gw.url}/admin/queues/api/queues`)).json();
      const names = (api.queues as Array<{ name: string }>).map((q) => q.name);
      expect(names).toEqual(expect.arrayContaining(['sheep.sheep_a', 'sheep.sheep_b', 'model.fresh@v7']));
    } finally {
      await gw.close();
    }
  });

  it('asks for basic auth when admin credentials are configured', async () => {
    const gw = await startGateway({ storage: storageSection('filesystem'), gateway: { admin_username: 'admin', admin_password: 'pw:1' } });
    try {
      const refused = await fetch(`${gw.url}/admin/queues`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toMatch(/^Basic/);
      const wrong = await fetch(`${gw.url}/admin/queues`, { headers: { authorization: `Basic ${Buffer.from('admin:nope').toString('base64')}` } });
      expect(wrong.status).toBe(401);
      const right = await fetch(`${gw.url}/admin/queues`, { headers: { authorization: `Basic ${Buffer.from('admin:pw:1').toString('base64')}` } });
      expect(right.status).toBe(200);
    } finally {
      await gw.close();
    }
  });
});
