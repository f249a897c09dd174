import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startS3Server, uniqueId, waitFor, type S3ServerHandle } from '@shepherd/testing';
import { echo, echoSheep, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(1);

let s3: S3ServerHandle;
beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3.stop();
});

const storages: Array<[string, () => Record<string, unknown>]> = [
  ['filesystem storage', () => ({})],
  ['S3 storage (bucket per job)', () => ({ storage: { url: s3.url, access_key: s3.accessKey, secret_key: s3.secretKey } })],
];

describe.each(storages)('a job through a bare sheep on %s', (_name, storage) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ ...storage(), sheep: { bare1: echoSheep(port(0)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('inline payload → result, polled until 200', async () => {
    const jobId = uniqueId('job');
    expect((await stack.submit({ job_id: jobId, model: echo(), payload: '{"n": 1}' })).status).toBe(200);
    const result = await waitFor(async () => {
      const response = await fetch(`${stack.url}/jobs/${jobId}/result`);
      return response.status === 200 ? response.json() : null;
    }, 30_000, 'the result');
    expect(result).toMatchObject({ result: { n: 1 }, model: echo() });
    const status = await (await fetch(`${stack.url}/jobs/${jobId}/status`)).json();
    expect(status).toMatchObject({ status: 'done', model: echo() });
    for (const key of ['enqueued_at', 'processing_started_at', 'finished_at']) expect(Date.parse(status[key])).not.toBeNaN();
    expect(Date.parse(status.finished_at)).toBeGreaterThanOrEqual(Date.parse(status.processing_started_at));
  });

  it('inputs uploaded first → wait_ready → result, with extra output files', async () => {
    const jobId = uniqueId('job');
    const input = { files: { 'pages/1.txt': 'one' } };
    expect((await fetch(`${stack.url}/jobs/${jobId}/inputs/input`, { method: 'PUT', body: JSON.stringify(input) })).status).toBe(201);
    expect((await stack.submit({ job_id: jobId, model: echo() })).status).toBe(200);
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    expect(await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()).toMatchObject({ result: input });
    expect(await (await fetch(`${stack.url}/jobs/${jobId}/result/pages/1.txt`)).text()).toBe('one');
  });

  it('a ~10 MB payload', async () => {
    const jobId = uniqueId('job');
    const payload = JSON.stringify({ blob: 'x'.repeat(10 * 1024 * 1024) });
    expect((await stack.submit({ job_id: jobId, model: echo(), payload })).status).toBe(200);
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    const result = await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json();
    expect(result.result.blob.length).toBe(10 * 1024 * 1024);
  });

  it('counts finished jobs, runner starts and stage times in the gateway’s /metrics', async () => {
    // Workers write their increments every 250 ms.
    const metrics = async () => (await fetch(`${stack.url}/metrics`)).text();
    await waitFor(async () => /shepherd_jobs_finished_total\{sheep="bare1"/.test(await metrics()), 5000, 'the workers’ metrics');
    const text = await metrics();
    expect(text).toMatch(/shepherd_jobs_finished_total\{sheep="bare1",model="echo:v1",status="done"\} [1-9]/);
    expect(text).toMatch(/shepherd_model_loads_total\{sheep="bare1"\} 1/);
    for (const stage of ['queue_wait', 'input_staging', 'runner', 'output_upload']) {
      expect(text).toMatch(new RegExp(`shepherd_job_stage_seconds_count\\{stage="${stage}",sheep="bare1"\\} [1-9]`));
    }
    expect(text).toContain('shepherd_sheep_up{sheep="bare1"} 1');
  });

  it('unknown job: 404 and the original message', async () => {
    const response = await fetch(`${stack.url}/jobs/nosuchjob/result`);
    expect(response.status).toBe(404);
    expect((await response.json()).message).toBe('Data for job `nosuchjob` does not exist');
  });

  it('/status shows the sheep running with its model, then not running once its worker is gone', async () => {
    const { sheep } = await (await fetch(`${stack.url}/status`)).json();
    expect(sheep.bare1).toMatchObject({ running: true, model: echo(), request: null });
    await stack.stopWorker('bare1', 'SIGKILL');
    await waitFor(async () => !(await (await fetch(`${stack.url}/status`)).json()).sheep.bare1.running, 10_000, 'not running');
    const { sheep: after } = await (await fetch(`${stack.url}/status`)).json();
    expect(after.bare1).toMatchObject({ running: false, model: null, request: null });
  });
});

describe('/status follows the job in hand without waiting for a heartbeat', () => {
  let stack: Stack;
  beforeAll(async () => {
    const worker = { heartbeat: '60s', lock_duration: '2s', poll_interval: '200ms', stop_timeout: '2s', shutdown_grace: '10s', start_timeout: '20s' };
    stack = await startStack({ worker, sheep: { slow1: echoSheep(port(0)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('shows the request while the runner works on it and null once it is done', async () => {
    const sheepState = async () => (await (await fetch(`${stack.url}/status`)).json()).sheep.slow1;
    const jobId = uniqueId('job');
    expect((await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 1500}' })).status).toBe(200);
    // The first job also starts the runner: the job shows for its 1.5 s of work, whenever that begins.
    await waitFor(async () => (await sheepState()).request === jobId, 20_000, 'the job in /status');
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    expect(await sheepState()).toMatchObject({ running: true, model: echo(), request: null });
  });
});
