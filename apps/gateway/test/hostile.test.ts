import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { startS3Server, uniqueId, waitFor, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

// Each case here was found by an attacker's probe against the stack, and
// each failed before its fix.
describe('hostile input', () => {
  let s3: S3ServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    s3 = await startS3Server();
    gw = await startGateway({ storage: storageSection('s3-single-bucket', s3) });
  });
  afterAll(async () => {
    await gw.close();
    await s3.stop();
  });

  async function expectError(response: Response, status: number, message: RegExp): Promise<void> {
    const body = (await response.json()) as { message: string };
    expect({ status: response.status, message: body.message }).toEqual({ status, message: expect.stringMatching(message) });
  }

  it('refuses overlong file names before they reach storage (an S3 server fell over on 250 bytes)', async () => {
    const jobId = uniqueId('job');
    const long = 'a'.repeat(250);
    await expectError(await fetch(`${gw.url}/jobs/${jobId}/inputs/${long}`, { method: 'PUT', body: 'x' }), 400, /at most 200 bytes/);
    await expectError(await fetch(`${gw.url}/jobs/${jobId}/inputs/${'b/'.repeat(450)}c`, { method: 'PUT', body: 'x' }), 400, /at most 800 bytes/);
    await expectError(await fetch(`${gw.url}/jobs/${jobId}/result/${long}`), 400, /at most 200 bytes/);
    expect((await fetch(`${gw.url}/ready`)).status).toBe(200); // storage still up
  });

  it('answers 404 to sheep ids that name object properties', async () => {
    for (const sheep of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      await expectError(await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'x', sheep_id: sheep }), 404, /does not exist/);
    }
  });

  it('does not start a job while an upload to it still streams', async () => {
    const jobId = uniqueId('job');
    const body = 'first half, second half';
    const { port } = new URL(gw.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.write(`PUT /jobs/${jobId}/inputs/input HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body.slice(0, 12));
    await waitFor(async () => (await gw.redis.get(gw.keys.uploads(jobId))) === '1', 5000, 'the upload to begin');
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: jobId, model }), 503, /still in progress/);
    socket.write(body.slice(12));
    await waitFor(() => answer.includes('\r\n\r\n{'), 5000, 'the upload answer');
    socket.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 201/);
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model })).status).toBe(200);
    expect(await (await fetch(`${gw.url}/jobs/${jobId}/input`)).text()).toBe(body);
  });

  it('keeps nothing of an upload the client cut short, so a start without payload finds no job', async () => {
    const jobId = uniqueId('job');
    const { port } = new URL(gw.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(`PUT /jobs/${jobId}/inputs/input HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n`);
        socket.write('only forty bytes of the thousand declared');
        socket.end(); // half-close: no more bytes will come
      });
      socket.on('error', reject);
      socket.on('close', () => resolve());
      socket.resume();
    });
    const uploads = gw.keys.uploads(jobId);
    await waitFor(async () => ['0', null].includes(await gw.redis.get(uploads)), 5000, 'the cut upload to end');
    expect(await gw.storage.jobExists(jobId)).toBe(false);
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: jobId, model }), 404, /upload its inputs first/);
  });

  it('answers a body that does not decompress with 400', async () => {
    const good = JSON.stringify({ job_id: uniqueId('job'), model, payload: 'x' });
    for (const [encoding, compress] of [['gzip', gzipSync], ['deflate', deflateSync], ['br', brotliCompressSync]] as const) {
      const corrupt = Buffer.from(compress(Buffer.from(good)));
      corrupt.fill(0x41, 4, 14);
      const response = await fetch(`${gw.url}/start-job`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: corrupt });
      expect({ encoding, status: response.status }).toEqual({ encoding, status: 400 });
      const intact = await fetch(`${gw.url}/start-job`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
        body: compress(Buffer.from(JSON.stringify({ job_id: uniqueId('job'), model, payload: 'x' }))),
      });
      expect({ encoding, status: intact.status }).toEqual({ encoding, status: 200 });
    }
  });

  it('reads wait_ready timeouts as plain seconds only, and waits on past the timer limit', async () => {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
    for (const bad of ['', '0x10', '1e3', '-1', 'Infinity', ' 5']) {
      await expectError(await fetch(`${gw.url}/jobs/${jobId}/wait_ready?timeout=${encodeURIComponent(bad)}`), 400, /Invalid timeout/);
    }
    await expectError(await fetch(`${gw.url}/jobs/${jobId}/wait_ready?timeout=1&timeout=2`), 400, /Invalid timeout/);
    const controller = new AbortController();
    let answered = false;
    const waiting = fetch(`${gw.url}/jobs/${jobId}/wait_ready?timeout=${2 ** 31}`, { signal: controller.signal }).then(() => (answered = true), () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(answered).toBe(false); // it used to answer at once with `queued`
    controller.abort();
    await waiting;
    const quick = await (await fetch(`${gw.url}/jobs/${jobId}/wait_ready?timeout=0.1`)).json();
    expect(quick).toMatchObject({ status: 'queued' });
  });

  it('refuses a payload that is not valid UTF-8 instead of changing its bytes', async () => {
    const head = Buffer.from(`{"job_id": "${uniqueId('job')}", "model": {"name": "echo", "version": "v1"}, "payload": "ab`);
    const body = Buffer.concat([head, Buffer.from([0xff, 0xfe]), Buffer.from('cd"}')]);
    await expectError(await fetch(`${gw.url}/start-job`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }), 400, /not valid UTF-8/);
  });

  it('tells callers no internal address when storage is down', async () => {
    const { port } = s3;
    await s3.stop();
    try {
      const response = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: 'x' });
      expect(response.status).toBe(503);
      const text = await response.text();
      expect(text).not.toMatch(/127\.0\.0\.1|:\d{4,5}|\/tmp\//);
      const ready = await (await fetch(`${gw.url}/ready`)).text();
      expect(ready).not.toMatch(/127\.0\.0\.1|\/tmp\//);
    } finally {
      s3 = await startS3Server({ port });
    }
  });
});
