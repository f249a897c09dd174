import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { uniqueId, waitFor } from '@shepherd/testing';
import { echo, echoSheep, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(3);

/** Pids of the runner processes listening on a port (their command line names it). */
function runnerPids(port: number): number[] {
  try {
    return execFileSync('pgrep', ['-f', `cli.js -p ${port} `]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

async function statusOf(stack: Stack, jobId: string): Promise<Record<string, unknown>> {
  return (await fetch(`${stack.url}/jobs/${jobId}/status`)).json();
}

describe('failures lose nothing', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ debug: true, worker: { heartbeat: '300ms', lock_duration: '2s', poll_interval: '200ms', stop_timeout: '2s', max_attempts: 2 }, sheep: { s1: echoSheep(port(0)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('a runner ErrorMessage fails the job with its message, type and traceback', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"fail": "bad input"}' });
    const status = await stack.waitReady(jobId);
    expect(status).toMatchObject({ status: 'failed', error_details: { message: 'Error: bad input', exception_type: 'Error' } });
    expect((status.error_details as { exception_traceback: string }).exception_traceback).toMatch(/at /);
    const result = await fetch(`${stack.url}/jobs/${jobId}/result`);
    expect(result.status).toBe(500);
    expect(await result.json()).toEqual({ message: 'Error: bad input' });
  });

  it('20 jobs alternating failure and success each end in their own state', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `${uniqueId('alt')}-${i}`);
    for (const [i, jobId] of ids.entries()) {
      const payload = i % 2 === 0 ? '{"fail": "odd one"}' : `{"i": ${i}}`;
      expect((await stack.submit({ job_id: jobId, model: echo(), payload })).status).toBe(200);
    }
    const states = await Promise.all(ids.map(async (jobId) => (await stack.waitReady(jobId)).status));
    expect(states).toEqual(ids.map((_, i) => (i % 2 === 0 ? 'failed' : 'done')));
    const last = await (await fetch(`${stack.url}/jobs/${ids[19]}/result`)).json();
    expect(last.result).toEqual({ i: 19 });
  });

  it('a runner killed mid-job: the job runs again on a fresh runner and ends done', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 2500}' });
    await waitFor(async () => (await statusOf(stack, jobId)).status === 'processing', 20_000, 'processing');
    const [pid] = await waitFor(() => runnerPids(port(0)), 5000, 'the runner pid');
    process.kill(pid as number, 'SIGKILL');
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('done');
    const result = await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json();
    expect(result.pid).not.toBe(pid);
  });

  it('a runner that dies on every attempt fails the job with the exit code and its stderr', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"exit": 3}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect((status.error_details as { message: string }).message).toMatch(/^The runner exited with code 3.*\(after 2 attempts\)$/s);
    // The sheep goes on.
    const next = uniqueId('job');
    await stack.submit({ job_id: next, model: echo(), payload: '{}' });
    expect((await stack.waitReady(next)).status).toBe('done');
  });

  it('a model without config fails its job with the path, and the sheep goes on', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: { name: 'missing', version: 'v9' }, payload: '{}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect((status.error_details as { message: string }).message).toMatch(/missing\/v9\/config\.yaml does not exist/);
    const next = uniqueId('job');
    await stack.submit({ job_id: next, model: echo(), payload: '{}' });
    expect((await stack.waitReady(next)).status).toBe('done');
  });

  it('a runner that dies while starting fails the job fast with the tail of its stderr', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: { name: 'broken', version: 'v1' }, payload: '{}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect((status.error_details as { message: string }).message).toMatch(/ended while starting: The runner exited with code \d+; its stderr ended with:\n.+/s);
  });
});

describe('a worker that dies', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ sheep: { s1: echoSheep(port(1)), s2: echoSheep(port(2)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('killed with SIGKILL mid-job takes its runner with it, and the job is taken up again and ends done', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 1500}', sheep_id: 's1' });
    await waitFor(async () => (await statusOf(stack, jobId)).status === 'processing', 20_000, 'processing');
    expect(runnerPids(port(1))).toHaveLength(1);
    await stack.stopWorker('s1', 'SIGKILL');
    await waitFor(() => runnerPids(port(1)).length === 0, 5000, 'the runner to die with its worker');
    stack.startWorker('s1');
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('done');
  });

  it('killed while holding a prefetched job loses neither job', async () => {
    const ids = [uniqueId('pre'), uniqueId('pre'), uniqueId('pre')];
    for (const jobId of ids) await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 800}', sheep_id: 's1' });
    await waitFor(async () => (await statusOf(stack, ids[1] as string)).status === 'processing', 20_000, 'the second job staged and handed over');
    await stack.stopWorker('s1', 'SIGKILL');
    stack.startWorker('s1');
    const states = await Promise.all(ids.map(async (jobId) => (await stack.waitReady(jobId)).status));
    expect(states).toEqual(['done', 'done', 'done']);
  });

  it('stopped with SIGTERM mid-job finishes the job, stops its runner and exits 0', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 1000}', sheep_id: 's2' });
    await waitFor(async () => (await statusOf(stack, jobId)).status === 'processing', 20_000, 'processing');
    const child = stack.workers.get('s2');
    const code = new Promise((resolve) => child?.once('exit', resolve));
    child?.kill('SIGTERM');
    expect(await code).toBe(0);
    expect(await statusOf(stack, jobId)).toMatchObject({ status: 'done' });
    expect(runnerPids(port(2))).toEqual([]);
  });
});
