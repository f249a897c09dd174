import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { modelQueueName, sheepQueueName } from '@shepherd/contracts';
import { startS3Server, uniqueId, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness, type StorageKind } from './harness';

let s3: S3ServerHandle;
beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3.stop();
});

const kinds: StorageKind[] = ['filesystem', 's3-bucket-per-job', 's3-single-bucket'];

describe.each(kinds)('jobs over HTTP on %s storage', (kind) => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection(kind, s3) });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('queues a job with an inline payload: status, input, BullMQ job', async () => {
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: '{"x": 1}' });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ success: true });

    const status = await (await fetch(`${gw.url}/jobs/${jobId}/status`)).json();
    expect(status).toMatchObject({ status: 'queued', model });
    expect(Date.parse(status.enqueued_at)).not.toBeNaN();

    const input = await fetch(`${gw.url}/jobs/${jobId}/input`);
    expect(input.status).toBe(200);
    expect(await input.text()).toBe('{"x": 1}');

    const job = await gw.queues.queue(modelQueueName(model)).getJob(jobId);
    // The payload is the one input: the worker is told so and skips listing inputs/.
    expect(job?.data).toEqual({ jobId, model, enqueuedAt: status.enqueued_at, inputs: ['input'] });
    expect(await gw.queues.modelQueueNames()).toContain(modelQueueName(model));

    const result = await fetch(`${gw.url}/jobs/${jobId}/result`);
    expect(result.status).toBe(202);
    expect(await result.json()).toEqual({ ready: false });
  });

  it('puts a job pinned to a sheep on that sheep’s queue', async () => {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'p', sheep_id: 'sheep_b' })).status).toBe(200);
    const job = await gw.queues.queue(sheepQueueName('sheep_b')).getJob(jobId);
    expect(job?.data).toMatchObject({ jobId, sheepId: 'sheep_b' });
  });

  it('starts a job from inputs uploaded over HTTP, without payload', async () => {
    const jobId = uniqueId('job');
    const image = Buffer.alloc(300_000, 7);
    const put = await fetch(`${gw.url}/jobs/${jobId}/inputs/images/a.bin`, { method: 'PUT', body: image });
    expect(put.status).toBe(201);
    expect(await put.json()).toEqual({ success: true, file: 'inputs/images/a.bin' });
    expect((await fetch(`${gw.url}/jobs/${jobId}/inputs/input`, { method: 'PUT', body: '{"a":1}' })).status).toBe(201);

    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model })).status).toBe(200);
    const back = await fetch(`${gw.url}/jobs/${jobId}/input/images/a.bin`);
    expect(back.status).toBe(200);
    expect(Buffer.from(await back.arrayBuffer()).equals(image)).toBe(true);
    expect(await gw.storage.listFiles(jobId, 'inputs')).toEqual(['images/a.bin', 'input']);

    const late = await fetch(`${gw.url}/jobs/${jobId}/inputs/more`, { method: 'PUT', body: 'x' });
    expect(late.status).toBe(409);
    expect((await late.json()).message).toMatch(/already started/);
  });

  it('answers a finished job: result file with its MIME type, then a failed job with 500', async () => {
    const done = uniqueId('job');
    await postJson(`${gw.url}/start-job`, { job_id: done, model, payload: '{}' });
    await gw.storage.putFile(done, 'outputs', 'output', Readable.from([Buffer.from('{"result": 1}')]), 13);
    await gw.storage.putFile(done, 'outputs', 'page.json', Readable.from([Buffer.from('[]')]), 2);
    await gw.statuses.write(done, { status: 'processing', model, processing_started_at: new Date().toISOString() });
    await gw.statuses.write(done, { status: 'done', model, finished_at: new Date().toISOString() });
    const result = await fetch(`${gw.url}/jobs/${done}/result`);
    expect(result.status).toBe(200);
    expect(await result.text()).toBe('{"result": 1}');
    const page = await fetch(`${gw.url}/jobs/${done}/result/page.json`);
    expect(page.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await fetch(`${gw.url}/jobs/${done}/result/missing`)).status).toBe(404);

    const failed = uniqueId('job');
    await postJson(`${gw.url}/start-job`, { job_id: failed, model, payload: '{}' });
    await gw.statuses.write(failed, {
      status: 'failed',
      model,
      error_details: { message: 'ValueError: bad input', exception_type: 'ValueError', exception_traceback: 'Traceback...' },
    });
    const answer = await fetch(`${gw.url}/jobs/${failed}/result`);
    expect(answer.status).toBe(500);
    expect(await answer.json()).toEqual({ message: 'ValueError: bad input' });
    // Not in debug mode: no traceback over HTTP.
    const status = await (await fetch(`${gw.url}/jobs/${failed}/status`)).json();
    expect(status.error_details).toEqual({ message: 'ValueError: bad input' });
  });

  it('refuses a duplicate job id with 409 and leaves the existing job untouched', async () => {
    const jobId = uniqueId('job');
    await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'first' });
    const again = await postJson(`${gw.url}/start-job`, { job_id: jobId, model: { name: 'other', version: '2' }, payload: 'second' });
    expect(again.status).toBe(409);
    expect((await again.json()).message).toBe(`Job \`${jobId}\` already exists`);
    expect(await (await fetch(`${gw.url}/jobs/${jobId}/input`)).text()).toBe('first');
    expect((await (await fetch(`${gw.url}/jobs/${jobId}/status`)).json()).model).toEqual(model);
    expect(await gw.queues.queue(modelQueueName({ name: 'other', version: '2' })).getJob(jobId)).toBeUndefined();
  });

  it('refuses an unknown sheep with 404 and creates nothing', async () => {
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x', sheep_id: 'nope' });
    expect(response.status).toBe(404);
    expect((await response.json()).message).toBe('Sheep `nope` does not exist');
    expect(await gw.storage.jobExists(jobId)).toBe(false);
    expect(await gw.statuses.read(jobId)).toBeNull();
  });

  it('refuses a start without payload when no inputs were uploaded', async () => {
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model });
    expect(response.status).toBe(404);
    expect((await response.json()).message).toMatch(/upload its inputs first or give a payload/);
    expect(await gw.statuses.read(jobId)).toBeNull();
  });

  it('answers 404 for an unknown job on every /jobs route', async () => {
    const jobId = uniqueId('nojob');
    for (const path of ['status', 'wait_ready', 'result', 'result/output', 'input', 'input/input']) {
      const response = await fetch(`${gw.url}/jobs/${jobId}/${path}`);
      expect([path, response.status]).toEqual([path, 404]);
      expect(await response.json()).toEqual({ message: `Data for job \`${jobId}\` does not exist` });
    }
  });

  it('never serves a byte from outside the job', async () => {
    const jobId = uniqueId('job');
    await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    for (const path of ['input/..%2f..%2fetc%2fpasswd', 'input/%2e%2e%2f%2e%2e%2fetc%2fpasswd', 'input/%2fetc%2fpasswd', 'input/a%5c..%5cb']) {
      const response = await fetch(`${gw.url}/jobs/${jobId}/${path}`);
      expect([path, response.status]).toEqual([path, 400]);
      expect((await response.json()).message).toMatch(/Invalid file path/);
    }
    for (const path of ['input/../../../etc/passwd', 'input/./input', 'result/../x']) {
      const status = await rawGetStatus(`${gw.url}/jobs/${jobId}/${path}`);
      expect([path, status]).toEqual([path, 400]);
    }
    const upload = await fetch(`${gw.url}/jobs/${uniqueId('job')}/inputs/..%2f..%2fescape`, { method: 'PUT', body: 'x' });
    expect(upload.status).toBe(400);
  });
});

/** A GET whose path is sent as written: fetch would resolve `..` segments first. */
function rawGetStatus(url: string): Promise<number> {
  const { hostname, port } = new URL(url);
  const path = url.slice(url.indexOf('/', 'http://'.length));
  return new Promise((resolve, reject) => {
    request({ hostname, port, path, method: 'GET' }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    })
      .on('error', reject)
      .end();
  });
}
