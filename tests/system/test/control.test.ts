import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { uniqueId, waitFor } from '@shepherd/testing';
import { echo, echoSheep, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(1);

/** The runner processes a worker started (its children running the runner CLI). */
function runnerPids(stack: Stack, sheepId: string): number[] {
  const worker = stack.workers.get(sheepId);
  if (!worker?.pid) return [];
  try {
    return execFileSync('pgrep', ['-P', String(worker.pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when there are none
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('control over running work on a bare sheep', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ sheep: { bare1: echoSheep(port(0)) }, worker: { heartbeat: '300ms', lock_duration: '3s', poll_interval: '200ms', stop_timeout: '1s' } });
  });
  afterAll(async () => stack.close());

  const post = (path: string) => fetch(`${stack.url}${path}`, { method: 'POST' });
  const status = async (jobId: string) => (await fetch(`${stack.url}/jobs/${jobId}/status`)).json() as Promise<Record<string, unknown>>;
  const submit = (jobId: string, payload: unknown, extra: Record<string, unknown> = {}) =>
    stack.submit({ job_id: jobId, model: echo(), payload: JSON.stringify(payload), ...extra });

  it('fails a job whose runner passes its timeout, stops that runner, and runs the next job on a fresh one', async () => {
    const slow = uniqueId('job');
    expect((await submit(slow, { sleep_ms: 60_000 }, { timeout: 1 })).status).toBe(200);
    await waitFor(async () => (await status(slow)).status === 'processing', 20_000, 'the slow job to start');
    const before = runnerPids(stack, 'bare1');
    const ended = await stack.waitReady(slow);
    expect(ended).toMatchObject({ status: 'failed', error_details: { message: 'The job timed out after 1 s' } });
    await waitFor(() => before.every((pid) => !alive(pid)), 5000, 'the timed-out runner to be gone');

    const next = uniqueId('job');
    const started = Date.now();
    expect((await submit(next, { n: 1 })).status).toBe(200);
    expect(await stack.waitReady(next)).toMatchObject({ status: 'done' });
    console.log(`timeout → next job done on a fresh runner: ${Date.now() - started} ms`);
  });

  it('cancels a queued job: it leaves its queue and never runs', async () => {
    const busy = uniqueId('job');
    const queued = uniqueId('job');
    await submit(busy, { sleep_ms: 1500 });
    await waitFor(async () => (await status(busy)).status === 'processing', 20_000, 'the busy job to start');
    await submit(queued, { n: 2 });
    const cancel = await post(`/jobs/${queued}/cancel`);
    expect(cancel.status).toBe(200);
    expect(await cancel.json()).toEqual({ success: true });
    expect(await status(queued)).toMatchObject({ status: 'cancelled' });
    expect(await stack.waitReady(busy)).toMatchObject({ status: 'done' });
    await new Promise((resolve) => setTimeout(resolve, 500)); // the sheep is free: a cancelled job would run now
    expect(await status(queued)).toMatchObject({ status: 'cancelled', processing_started_at: null });
    const result = await fetch(`${stack.url}/jobs/${queued}/result`);
    expect(result.status).toBe(409);
    expect((await post(`/jobs/${queued}/cancel`)).status).toBe(409); // finished already
    expect((await post(`/jobs/${uniqueId('job')}/cancel`)).status).toBe(404);
  });

  it('cancels a running job: its runner is stopped, its outputs are dropped, the next job runs', async () => {
    const running = uniqueId('job');
    await submit(running, { sleep_ms: 60_000 });
    await waitFor(async () => (await status(running)).status === 'processing', 20_000, 'the job to start');
    await waitFor(() => runnerPids(stack, 'bare1').length > 0, 5000, 'its runner');
    const pids = runnerPids(stack, 'bare1');
    const asked = Date.now();
    expect((await post(`/jobs/${running}/cancel`)).status).toBe(200);
    await waitFor(() => pids.every((pid) => !alive(pid)), 10_000, 'the runner to be gone');
    console.log(`cancel → runner gone (bare): ${Date.now() - asked} ms`);
    expect(await status(running)).toMatchObject({ status: 'cancelled' });
    expect((await fetch(`${stack.url}/jobs/${running}/result`)).status).toBe(409);
    const next = uniqueId('job');
    await submit(next, { n: 3 });
    expect(await stack.waitReady(next)).toMatchObject({ status: 'done' });
    expect(await status(running)).toMatchObject({ status: 'cancelled' }); // the worker's settling did not overwrite it
  });

  it('leaves exactly one final state when a cancel races the job’s end', async () => {
    for (let i = 0; i < 5; i++) {
      const jobId = uniqueId('job');
      await submit(jobId, { sleep_ms: 150 });
      await waitFor(async () => (await status(jobId)).status === 'processing', 20_000, 'the job to start');
      await new Promise((resolve) => setTimeout(resolve, 140 + i * 5));
      const cancel = await post(`/jobs/${jobId}/cancel`);
      expect([200, 409]).toContain(cancel.status);
      const final = await stack.waitReady(jobId);
      expect(['done', 'cancelled']).toContain(final.status);
      expect(final.status).toBe(cancel.status === 200 ? 'cancelled' : 'done');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await status(jobId)).status).toBe(final.status); // and it stays so
    }
  });

  it('runs a high-priority job before the low ones that waited longer', async () => {
    const busy = uniqueId('job');
    await submit(busy, { sleep_ms: 1000 });
    await waitFor(async () => (await status(busy)).status === 'processing', 20_000, 'the busy job to start');
    const lows = Array.from({ length: 10 }, () => uniqueId('low'));
    for (const jobId of lows) await submit(jobId, { n: 0 }, { priority: -10 });
    const high = uniqueId('high');
    await submit(high, { n: 1 }, { priority: 50 });
    const ends = await Promise.all([high, ...lows].map((jobId) => stack.waitReady(jobId)));
    const started = ends.map((end) => Date.parse(String(end.processing_started_at)));
    const [highStart = 0, ...lowStarts] = started;
    // The job prefetched while the busy one ran may have been a low one; every other low starts after the high one.
    expect(lowStarts.filter((start) => start < highStart).length).toBeLessThanOrEqual(1);
    const lowOrder = lows.map((jobId, index) => ({ jobId, start: lowStarts[index] ?? 0 })).sort((a, b) => a.start - b.start);
    expect(lowOrder.map((row) => row.jobId)).toEqual(lows); // equal priorities keep submit order
  });

  it('fails a job nobody started within its queue timeout', async () => {
    await stack.stopWorker('bare1');
    const jobId = uniqueId('job');
    await submit(jobId, { n: 4 }, { queue_timeout: 1 });
    const ended = await stack.waitReady(jobId);
    expect(ended).toMatchObject({ status: 'failed', error_details: { message: 'The job was not started within 1 s (its queue timeout)' } });
    stack.startWorker('bare1');
    await waitFor(async () => Boolean(await stack.sheepState('bare1')), 20_000, 'the worker back');
    const next = uniqueId('job');
    await submit(next, { n: 5 });
    expect(await stack.waitReady(next)).toMatchObject({ status: 'done' });
    expect(await status(jobId)).toMatchObject({ status: 'failed' }); // it never ran after all
  });
});

describe('retention', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ sheep: { bare1: echoSheep(port(0)) }, retention: { done: '1s', failed: '1s', interval: '300ms' } });
  });
  afterAll(async () => stack.close());

  it('removes a finished job after its time: every route answers 404; DELETE removes at once', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"n": 1}' });
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    await waitFor(async () => (await fetch(`${stack.url}/jobs/${jobId}/status`)).status === 404, 10_000, 'the job to expire');
    for (const route of ['result', 'input', 'wait_ready?timeout=0']) expect((await fetch(`${stack.url}/jobs/${jobId}/${route}`)).status).toBe(404);
    const listed = (await (await fetch(`${stack.url}/jobs?limit=1000`)).json()) as { jobs: Array<{ job_id: string }> };
    expect(listed.jobs.map((job) => job.job_id)).not.toContain(jobId);

    const deleted = uniqueId('job');
    await stack.submit({ job_id: deleted, model: echo(), payload: '{"n": 2}', timeout: 30 });
    expect([409, 204]).toContain((await fetch(`${stack.url}/jobs/${deleted}`, { method: 'DELETE' })).status);
    await stack.waitReady(deleted);
    expect((await fetch(`${stack.url}/jobs/${deleted}`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${stack.url}/jobs/${deleted}/status`)).status).toBe(404);
    expect((await fetch(`${stack.url}/jobs/${deleted}`, { method: 'DELETE' })).status).toBe(404);
  });
});
