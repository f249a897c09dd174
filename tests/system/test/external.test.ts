import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { uniqueId, waitFor } from '@shepherd/testing';
import { echo, echoSheep, MODELS, RUNNER_CLI, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(2);

/** The example echo runner for echo:v1, started by the test as someone else would (a runner container). */
function startRunner(runnerPort: number): ChildProcess {
  return spawn(process.execPath, [RUNNER_CLI, '-p', String(runnerPort), join(MODELS, 'echo/v1/config.yaml')], { stdio: 'ignore' });
}

async function kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** True when something accepts TCP connections on the port. */
function listening(onPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(onPort, '127.0.0.1');
    socket.once('connect', () => resolve(true));
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.destroy());
  });
}

async function status(stack: Stack, jobId: string): Promise<Record<string, unknown>> {
  return (await fetch(`${stack.url}/jobs/${jobId}/status`)).json() as Promise<Record<string, unknown>>;
}

/** The pid of the runner that answered, from the echo runner's output. */
async function answeredBy(stack: Stack, jobId: string): Promise<number> {
  const output = (await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()) as { pid: number };
  return output.pid;
}

describe('external sheep: a runner someone else starts', () => {
  let stack: Stack;
  let runner: ChildProcess;
  beforeAll(async () => {
    runner = startRunner(port(0));
    stack = await startStack(
      {
        sheep: {
          ext: { type: 'external', address: `tcp://127.0.0.1:${port(0)}`, model: echo('v1') },
          // Started only when a test wants another sheep to take what `ext` leaves.
          other: echoSheep(port(1)),
        },
      },
      { startWorkers: false },
    );
    stack.startWorker('ext');
    await waitFor(async () => Boolean(await stack.sheepState('ext')), 20_000, 'the external sheep to beat');
  });
  afterAll(async () => {
    await stack.close();
    await kill(runner);
  });

  it('runs jobs of its model in the runner it was pointed at', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{"hello": 1}' });
    expect((await stack.waitReady(jobId)).status).toBe('done');
    expect(await answeredBy(stack, jobId)).toBe(runner.pid);
  });

  it('fails a job pinned to it that names another model, saying which model it runs', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v2'), payload: '{}', sheep_id: 'ext' });
    const done = await stack.waitReady(jobId);
    expect(done.status).toBe('failed');
    expect((done.error_details as { message: string }).message).toContain('runs only echo:v1');
    // The runner it holds is untouched: the next job of its model runs in it.
    const next = uniqueId('job');
    await stack.submit({ job_id: next, model: echo('v1'), payload: '{}' });
    expect((await stack.waitReady(next)).status).toBe('done');
    expect(await answeredBy(stack, next)).toBe(runner.pid);
  });

  it('never takes a job of another model; another sheep does', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v2'), payload: '{}' });
    // Several polls of the idle external sheep pass (poll_interval is 200 ms).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await status(stack, jobId)).status).toBe('queued');
    stack.startWorker('other');
    try {
      expect((await stack.waitReady(jobId)).status).toBe('done');
      expect(await answeredBy(stack, jobId)).not.toBe(runner.pid);
    } finally {
      await stack.stopWorker('other');
    }
  });

  it('runs a job again once a runner killed under it is back, and never starts one itself', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{"sleep_ms": 3000}' });
    await waitFor(async () => (await status(stack, jobId)).status === 'processing', 10_000, 'the job to start');
    await new Promise((resolve) => setTimeout(resolve, 300)); // in the runner
    await kill(runner);
    // Longer than a bare sheep would take to start a runner: nothing listens, the job waits.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(await listening(port(0))).toBe(false);
    expect((await status(stack, jobId)).status).toBe('processing');

    runner = startRunner(port(0));
    const done = await stack.waitReady(jobId);
    expect(done.status).toBe('done');
    expect(await answeredBy(stack, jobId)).toBe(runner.pid);
    // And later jobs run in the new runner too.
    const next = uniqueId('job');
    await stack.submit({ job_id: next, model: echo('v1'), payload: '{}' });
    expect((await stack.waitReady(next)).status).toBe('done');
    expect(await answeredBy(stack, next)).toBe(runner.pid);
  }, 60_000);

  it('leaves the runner running when the worker stops', async () => {
    await stack.stopWorker('ext', 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(runner.exitCode).toBeNull();
    expect(runner.signalCode).toBeNull();
    expect(await listening(port(0))).toBe(true);
    // A new worker takes up the same runner.
    stack.startWorker('ext');
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{}' });
    expect((await stack.waitReady(jobId)).status).toBe('done');
    expect(await answeredBy(stack, jobId)).toBe(runner.pid);
  }, 30_000);
});
