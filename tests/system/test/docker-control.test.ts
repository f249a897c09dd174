import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { promisify } from 'node:util';
import {
  buildEchoRunnerImage,
  dockerAnswers,
  freePort,
  pushImage,
  startRegistry,
  uniqueId,
  waitFor,
  type RegistryHandle,
} from '@shepherd/testing';
import { echo, startStack, type Stack } from './harness';

// Cancel and timeouts on a docker sheep: the docker half of control.test.ts.
// A real engine and registry; the echo image's runner is PID 1 and stops on
// SIGTERM, but only after the job in hand (a minute here): every stop below
// waits the sheep's stop_timeout (1 s) and then kills. The times are printed,
// never asserted.
jest.setTimeout(120_000);
const STOP_TIMEOUT_MS = 1000;
let registry: RegistryHandle;

beforeAll(async () => {
  if (!dockerAnswers()) throw new Error('No Docker engine answers: run scripts/setup.sh (it starts dockerd)');
  buildEchoRunnerImage('local/docker-control-echo:v1', echo('v1'));
  registry = await startRegistry();
  pushImage('local/docker-control-echo:v1', `${registry.address}/echo:v1`);
}, 300_000);

afterAll(async () => {
  await registry?.stop();
});

const run = promisify(execFile);

/** The engine's API on its socket: a few ms a call, so polls measure the container and not the CLI. */
function engine(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: '/var/run/docker.sock', method, path }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The sheep's containers (running or not), full ids. */
async function containers(sheepId: string): Promise<string[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`shepherd.sheep=${sheepId}`] }));
  const { body } = await engine('GET', `/containers/json?all=true&filters=${filters}`);
  return (JSON.parse(body) as Array<{ Id: string }>).map((c) => c.Id);
}

/** 'running', 'stopped' (exited, not yet removed) or 'removed'. */
async function containerState(id: string): Promise<'running' | 'stopped' | 'removed'> {
  const { status, body } = await engine('GET', `/containers/${id}/json`);
  if (status === 404) return 'removed';
  return (JSON.parse(body) as { State: { Running: boolean } }).State.Running ? 'running' : 'stopped';
}

/** Resolves with the Date.now() at which the container was first seen stopped and removed. */
async function watchGone(id: string): Promise<{ stopped: number; removed: number }> {
  let stopped = 0;
  const removed = await waitFor(async () => {
    const state = await containerState(id);
    if (state !== 'running' && !stopped) stopped = Date.now();
    return state === 'removed' ? Date.now() : 0;
  }, 20_000, `container ${id.slice(0, 12)} to be gone`);
  return { stopped, removed };
}

describe('control over running work on a docker sheep', () => {
  let stack: Stack;
  let sheepId: string;
  beforeAll(async () => {
    sheepId = uniqueId('dc');
    stack = await startStack({
      registry: { url: `http://${registry.address}` },
      sheep: { [sheepId]: { type: 'docker', port: await freePort(), autoremove_containers: true, stop_timeout: `${STOP_TIMEOUT_MS}ms` } },
      worker: { heartbeat: '300ms', lock_duration: '3s', poll_interval: '200ms', stop_timeout: '1s' },
    });
    // Pulled and started once here, so each test starts on a warm runner.
    const warm = uniqueId('job');
    await submit(warm, { n: 0 });
    expect(await stack.waitReady(warm)).toMatchObject({ status: 'done' });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    for (const id of await containers(sheepId)) await run('docker', ['rm', '-f', id]).catch(() => undefined);
  });

  const post = (path: string) => fetch(`${stack.url}${path}`, { method: 'POST' });
  const status = async (jobId: string) => (await fetch(`${stack.url}/jobs/${jobId}/status`)).json() as Promise<Record<string, unknown>>;
  const submit = (jobId: string, payload: unknown, extra: Record<string, unknown> = {}) =>
    stack.submit({ job_id: jobId, model: echo(), payload: JSON.stringify(payload), ...extra });
  const at = (value: unknown) => Date.parse(String(value));

  /** The one running container of the sheep: the runner of the job in hand. */
  async function runningContainer(): Promise<string> {
    return waitFor(async () => {
      for (const id of await containers(sheepId)) if ((await containerState(id)) === 'running') return id;
      return '';
    }, 20_000, 'a running container');
  }

  it('fails a job whose runner passes its timeout, removes its container, and runs the next job in a fresh one', async () => {
    const slow = uniqueId('job');
    const next = uniqueId('job');
    expect((await submit(slow, { sleep_ms: 60_000 }, { timeout: 1 })).status).toBe(200);
    await waitFor(async () => (await status(slow)).status === 'processing', 20_000, 'the slow job to start');
    const container = await runningContainer();
    const gone = watchGone(container);
    gone.catch(() => undefined); // awaited below; a rejection then fails the test
    expect((await submit(next, { n: 1 })).status).toBe(200); // queued behind it: starts when the sheep is free

    const ended = await stack.waitReady(slow);
    expect(ended).toMatchObject({ status: 'failed', error_details: { message: 'The job timed out after 1 s' } });
    const { stopped, removed } = await gone;
    expect(await containerState(container)).toBe('removed');
    const after = await stack.waitReady(next);
    expect(after).toMatchObject({ status: 'done' });
    expect(await containers(sheepId)).not.toContain(container);
    expect(await runningContainer()).not.toBe(container);

    const fired = at(ended.processing_started_at) + 1000;
    console.log(
      [
        `docker timeout (stop_timeout ${STOP_TIMEOUT_MS} ms), from the timer firing (processing_started_at + 1 s):`,
        `  slow job failed (finished_at):      ${at(ended.finished_at) - fired} ms`,
        `  its container stopped (seen):       ${stopped - fired} ms`,
        `  its container removed (seen):       ${removed - fired} ms`,
        `  next job processing_started_at:     ${at(after.processing_started_at) - fired} ms (negative: handed to the doomed runner early, then run again)`,
        `  next job done (finished_at):        ${at(after.finished_at) - fired} ms`,
      ].join('\n'),
    );
  });

  it('cancels a queued job: it never runs', async () => {
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
    expect((await fetch(`${stack.url}/jobs/${queued}/result`)).status).toBe(409);
    expect((await post(`/jobs/${queued}/cancel`)).status).toBe(409); // finished already
  });

  it('cancels a running job: its container is removed, the next job runs in a fresh one', async () => {
    const running = uniqueId('job');
    const next = uniqueId('job');
    await submit(running, { sleep_ms: 60_000 });
    await waitFor(async () => (await status(running)).status === 'processing', 20_000, 'the job to start');
    const container = await runningContainer();
    await submit(next, { n: 3 }); // queued behind it
    const gone = watchGone(container);
    gone.catch(() => undefined); // awaited below; a rejection then fails the test
    const asked = Date.now();
    expect((await post(`/jobs/${running}/cancel`)).status).toBe(200);
    const answered = Date.now();
    const { stopped, removed } = await gone;
    expect(await containerState(container)).toBe('removed');
    expect(await status(running)).toMatchObject({ status: 'cancelled' });
    expect((await fetch(`${stack.url}/jobs/${running}/result`)).status).toBe(409);
    const after = await stack.waitReady(next);
    expect(after).toMatchObject({ status: 'done' });
    expect(await status(running)).toMatchObject({ status: 'cancelled' }); // the worker's settling did not overwrite it
    expect(await containers(sheepId)).not.toContain(container);

    console.log(
      [
        `docker cancel of a running job (stop_timeout ${STOP_TIMEOUT_MS} ms), from the cancel request:`,
        `  cancel answered:               ${answered - asked} ms`,
        `  container stopped (seen):      ${stopped - asked} ms`,
        `  container removed (seen):      ${removed - asked} ms`,
        `  next job done (finished_at):   ${at(after.finished_at) - asked} ms`,
      ].join('\n'),
    );
  });
});
