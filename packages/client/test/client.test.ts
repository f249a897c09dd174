import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { tempDir, uniqueId, waitFor } from '@shepherd/testing';
import {
  ConflictError,
  fileInput,
  ForbiddenError,
  JobFailedError,
  NotFoundError,
  NotReadyError,
  saveInput,
  saveResult,
  ShepherdClient,
  UnauthorizedError,
  type JobEvent,
} from '../src/node';
import { startStack, type Stack } from './stack';

const echo = 'echo:v1';

describe('the client against a real gateway and worker', () => {
  let stack: Stack;
  let client: ShepherdClient;
  beforeAll(async () => {
    stack = await startStack();
    client = new ShepherdClient({ url: stack.url });
  }, 60_000);
  afterAll(() => stack?.close());

  it('submits an inline payload, waits and reads the result', async () => {
    const jobId = await client.submit({ model: echo, payload: JSON.stringify({ hello: 1 }) });
    expect(jobId).toMatch(/^[a-z][a-z0-9]{2,62}$/);
    const status = await client.wait(jobId);
    expect(status).toMatchObject({ status: 'done', model: { name: 'echo', version: 'v1' }, sheep_id: 's1' });
    const output = (await (await client.result(jobId)).json()) as { result: unknown };
    expect(output.result).toEqual({ hello: 1 });
  });

  it('uploads files from disk and saves the result files into a directory', async () => {
    const dir = tempDir('client-files');
    writeFileSync(join(dir, 'request.json'), JSON.stringify({ files: { 'more/a.txt': 'from the runner' } }));
    writeFileSync(join(dir, 'extra.bin'), Buffer.from([0, 1, 2, 255]));
    const seen: string[] = [];
    const jobId = await client.submit(
      { model: echo, inputs: [await fileInput(join(dir, 'request.json'), 'input'), await fileInput(join(dir, 'extra.bin'))] },
      { onProgress: (p) => p.done && seen.push(`${p.file}:${p.loaded}`) },
    );
    expect(seen).toEqual([`inputs/input:${readFileSync(join(dir, 'request.json')).length}`, 'inputs/extra.bin:4']);
    expect((await client.wait(jobId)).status).toBe('done');
    const out = join(dir, 'out');
    const saved = await saveResult(client, jobId, out, { files: ['output', 'more/a.txt'] });
    expect(saved).toEqual([join(out, 'output'), join(out, 'more/a.txt')]);
    expect(readFileSync(join(out, 'more/a.txt'), 'utf8')).toBe('from the runner');
    expect(JSON.parse(readFileSync(join(out, 'output'), 'utf8')).result).toEqual({ files: { 'more/a.txt': 'from the runner' } });
    await saveInput(client, jobId, join(dir, 'back'), { files: ['extra.bin'] });
    expect([...readFileSync(join(dir, 'back/extra.bin'))]).toEqual([0, 1, 2, 255]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('iterates over the events of a job and ends after the final one', async () => {
    const jobId = await client.submit({ model: echo, payload: JSON.stringify({ sleep_ms: 400 }) });
    const events: JobEvent[] = [];
    for await (const event of client.events(jobId, { pollIntervalMs: 100 })) events.push(event);
    const states = events.map((e) => e.status.status);
    expect(states.at(-1)).toBe('done');
    expect(states).toContain('processing');
    const order = ['accepted', 'queued', 'processing', 'done'];
    expect([...states].sort((a, b) => order.indexOf(a) - order.indexOf(b))).toEqual(states);
    expect(events.every((e) => e.status.job_id === jobId)).toBe(true);
    // The gateway serves the events route now: the ids are its Redis stream ids, to resume from.
    expect(events.every((e) => e.id !== null)).toBe(true);
  });

  it('cancels a job: its wait ends cancelled, its result is a conflict, a second cancel too', async () => {
    const jobId = await client.submit({ model: echo, payload: JSON.stringify({ sleep_ms: 10_000 }) });
    await client.cancel(jobId);
    expect((await client.wait(jobId, { timeoutMs: 10_000 })).status).toBe('cancelled');
    await expect(client.result(jobId)).rejects.toBeInstanceOf(ConflictError);
    await expect(client.cancel(jobId)).rejects.toBeInstanceOf(ConflictError);
  });

  it('lists jobs, one page or all of them', async () => {
    const ids = [await client.submit({ model: echo, payload: '{}' }), await client.submit({ model: echo, payload: '{}' })];
    for (const id of ids) await client.wait(id);
    const page = await client.list({ limit: 1, status: 'done' });
    expect(page.jobs).toHaveLength(1);
    expect(page.next_cursor).toEqual(expect.any(String));
    const all: string[] = [];
    for await (const job of client.listAll({ model: echo, limit: 2 })) all.push(job.job_id);
    expect(all).toEqual(expect.arrayContaining(ids));
    expect(new Set(all).size).toBe(all.length);
  });

  it('answers with typed errors', async () => {
    await expect(client.status('nosuchjob')).rejects.toMatchObject({ constructor: NotFoundError, status: 404 });
    await expect(client.wait('nosuchjob')).rejects.toBeInstanceOf(NotFoundError);
    const jobId = await client.submit({ model: echo, payload: JSON.stringify({ sleep_ms: 1500 }) });
    await expect(client.submit({ job_id: jobId, model: echo, payload: '{}' })).rejects.toMatchObject({ constructor: ConflictError, status: 409 });
    await expect(client.result(jobId)).rejects.toBeInstanceOf(NotReadyError);
    const failed = await client.submit({ model: echo, payload: JSON.stringify({ fail: 'boom' }) });
    expect(await client.wait(failed)).toMatchObject({ status: 'failed', error_details: { message: expect.stringContaining('boom') } });
    await expect(client.result(failed)).rejects.toMatchObject({ constructor: JobFailedError, jobId: failed, message: expect.stringContaining('boom') });
  });

  it('treats a 409 on a retried submit as its own first try having landed', async () => {
    // The first start-job reaches the gateway, then its answer is lost.
    let dropped = false;
    const lossy: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!dropped && String(input).endsWith('/start-job')) {
        dropped = true;
        throw new TypeError('fetch failed');
      }
      return response;
    };
    const flaky = new ShepherdClient({ url: stack.url, fetch: lossy, retryDelayMs: 10 });
    const jobId = await flaky.submit({ model: echo, payload: '{"again": true}' });
    expect(dropped).toBe(true);
    expect((await flaky.wait(jobId)).status).toBe('done');
    // Someone else's job under that id is still a conflict.
    dropped = false;
    await expect(flaky.submit({ job_id: jobId, model: 'echo:v2', payload: '{}' })).rejects.toBeInstanceOf(ConflictError);
  });

  it('answers the status as it is when a wait times out', async () => {
    const jobId = await client.submit({ model: echo, payload: JSON.stringify({ sleep_ms: 3000 }) });
    const status = await client.wait(jobId, { timeoutMs: 300 });
    expect(['queued', 'processing']).toContain(status.status);
    await client.cancel(jobId);
  });
});

describe('the client with auth configured', () => {
  const token = `tok-${uniqueId()}-submit`;
  const reader = `tok-${uniqueId()}-reader`;
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      worker: false,
      config: {
        auth: {
          tokens: [
            { name: 'submitter', token, scopes: ['submit', 'read'] },
            { name: 'reader', token: reader, scopes: ['read'] },
          ],
        },
      },
    });
  }, 60_000);
  afterAll(() => stack?.close());

  it('sends the bearer token, and maps 401 and 403', async () => {
    await expect(new ShepherdClient({ url: stack.url }).list()).rejects.toMatchObject({ constructor: UnauthorizedError, status: 401 });
    await expect(new ShepherdClient({ url: stack.url, token: 'x'.repeat(20) }).list()).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(new ShepherdClient({ url: stack.url, token: reader }).submit({ model: echo, payload: '{}' })).rejects.toMatchObject({
      constructor: ForbiddenError,
      status: 403,
    });
    const client = new ShepherdClient({ url: stack.url, token });
    const jobId = await client.submit({ model: echo, payload: '{}' });
    expect((await client.status(jobId)).status).toBe('queued');
    await waitFor(async () => (await client.list()).jobs.some((j) => j.job_id === jobId), 5000, 'the job in the list');
  });
});
