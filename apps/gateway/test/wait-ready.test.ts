import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { uniqueId, waitFor } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

describe('wait_ready and status reads', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem') });
  });
  afterAll(async () => {
    await gw.close();
  });

  async function submit(): Promise<string> {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
    return jobId;
  }

  it('answers as soon as the job finishes, woken by the status event', async () => {
    const jobId = await submit();
    const waiting = fetch(`${gw.url}/jobs/${jobId}/wait_ready`).then((r) => r.json());
    let answered = false;
    void waiting.then(() => (answered = true));
    await gw.statuses.write(jobId, { status: 'processing', model, processing_started_at: new Date().toISOString() });
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    await gw.statuses.write(jobId, { status: 'done', model, finished_at: new Date().toISOString() });
    expect(await waiting).toMatchObject({ status: 'done', model });
  });

  it('answers at once for a job already finished', async () => {
    const jobId = await submit();
    await gw.statuses.write(jobId, { status: 'failed', model, error_details: { message: 'boom' } });
    const status = await (await fetch(`${gw.url}/jobs/${jobId}/wait_ready`)).json();
    expect(status).toMatchObject({ status: 'failed', error_details: { message: 'boom' } });
  });

  it('answers with the current status when the timeout passes', async () => {
    const jobId = await submit();
    const response = await fetch(`${gw.url}/jobs/${jobId}/wait_ready?timeout=0.2`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'queued' });
  });

  it('lets go of a waiter whose client disconnected', async () => {
    const jobId = await submit();
    const abort = new AbortController();
    const waiting = fetch(`${gw.url}/jobs/${jobId}/wait_ready`, { signal: abort.signal }).catch(() => 'aborted');
    const { StatusEvents } = await import('@shepherd/queue');
    const events = gw.app.get(StatusEvents);
    const before = await waitFor(() => events.waiting, 5000, 'the waiter');
    abort.abort();
    expect(await waiting).toBe('aborted');
    await new Promise((r) => setTimeout(r, 100));
    expect(events.waiting).toBe(before - 1);
  });

  it('answers waiters with the current status when the gateway shuts down', async () => {
    const other = await startGateway({ storage: storageSection('filesystem') });
    const jobId = uniqueId('job');
    await postJson(`${other.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    const waiting = fetch(`${other.url}/jobs/${jobId}/wait_ready`).then((r) => r.json());
    const { StatusEvents } = await import('@shepherd/queue');
    await waitFor(() => other.app.get(StatusEvents).waiting, 5000, 'the waiter');
    await other.close();
    expect(await waiting).toMatchObject({ status: 'queued' });
  });

  it('serves status from storage after a Redis flush of the cache', async () => {
    const jobId = await submit();
    await gw.redis.del(gw.keys.status(jobId));
    const status = await (await fetch(`${gw.url}/jobs/${jobId}/status`)).json();
    expect(status).toMatchObject({ status: 'queued', model });
    // And the id stays taken: storage remembers the job.
    await gw.redis.del(gw.keys.status(jobId));
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'again' })).status).toBe(409);
    expect(await (await fetch(`${gw.url}/jobs/${jobId}/input`)).text()).toBe('x');
  });

  it('shows the traceback of a failed job in debug mode only', async () => {
    const debug = await startGateway({ storage: storageSection('filesystem'), debug: true });
    try {
      const jobId = uniqueId('job');
      await postJson(`${debug.url}/start-job`, { job_id: jobId, model, payload: 'x' });
      const error_details = { message: 'KeyError: x', exception_type: 'KeyError', exception_traceback: 'Traceback (most recent call last)' };
      await debug.statuses.write(jobId, { status: 'failed', model, error_details });
      expect((await (await fetch(`${debug.url}/jobs/${jobId}/status`)).json()).error_details).toEqual(error_details);
    } finally {
      await debug.close();
    }
  });
});
