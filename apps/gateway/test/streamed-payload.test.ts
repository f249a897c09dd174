import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { startS3Server, uniqueId, waitFor, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

// The start-job body is parsed as it streams in: these send big payloads the
// way real clients do (and in odd pieces) and check what reached inputs/input.

/** A 10 MB payload with every kind of character JSON escapes or UTF-8 spreads over several bytes. */
function bigPayload(): string {
  const piece = `x"\\\n\t\u0001/é€😀\u00a0\u3000\u2028\ud800${'y'.repeat(80)}`;
  return piece.repeat(Math.ceil((10 * 1024 * 1024) / piece.length));
}

/** Sends `body` over a raw socket in the given pieces, a pause between each, and returns the answer's status line and body. */
async function sendInPieces(url: string, body: Buffer, pieces: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once('connect', resolve));
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  const head = Object.entries({ 'content-type': 'application/json', 'content-length': String(body.length), ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.write(`POST /start-job HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${head}\r\n`);
  for (const piece of pieces) {
    socket.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => socket.once('close', resolve));
  const [status, text] = [Number(answer.slice(9, 12)), answer.slice(answer.indexOf('\r\n\r\n') + 4)];
  return { status, text };
}

/** `bytes` cut so that each of the first `count` 4-byte characters arrives one byte per piece. */
function splitInsideEmojis(bytes: Buffer, count: number): Buffer[] {
  const pieces: Buffer[] = [];
  let from = 0;
  let at = bytes.indexOf(Buffer.from('😀'));
  for (let i = 0; i < count && at !== -1; i++) {
    pieces.push(bytes.subarray(from, at + 1), bytes.subarray(at + 1, at + 2), bytes.subarray(at + 2, at + 3));
    from = at + 3;
    at = bytes.indexOf(Buffer.from('😀'), at + 4);
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

describe('a start-job body parsed as it streams in', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem'), gateway: { payload_limit: '16mb' } });
  });
  afterAll(async () => gw.close());

  async function storedInput(jobId: string): Promise<Buffer> {
    const response = await fetch(`${gw.url}/jobs/${jobId}/input`);
    expect(response.status).toBe(200);
    return Buffer.from(await response.arrayBuffer());
  }

  async function expectNothingLeft(jobId: string): Promise<void> {
    expect(await gw.storage.jobExists(jobId)).toBe(false);
    expect((await fetch(`${gw.url}/jobs/${jobId}/status`)).status).toBe(404);
  }

  it('stores a 10 MB payload with escapes and multi-byte characters byte for byte, split inside 4-byte characters', async () => {
    const jobId = uniqueId('job');
    const payload = bigPayload();
    const body = Buffer.from(JSON.stringify({ job_id: jobId, model, payload }));
    const answer = await sendInPieces(gw.url, body, splitInsideEmojis(body, 3));
    expect(answer).toEqual({ status: 200, text: '{"success":true}' });
    expect((await storedInput(jobId)).equals(Buffer.from(payload))).toBe(true);
  });

  it('finds the payload first or last in the object', async () => {
    const payload = `${'é'.repeat(300_000)}😀`;
    const first = uniqueId('job');
    const last = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, `{"payload": ${JSON.stringify(payload)}, "job_id": "${first}", "model": ${JSON.stringify(model)}}`)).status).toBe(200);
    expect((await postJson(`${gw.url}/start-job`, { job_id: last, model, sheep_id: 'sheep_a', payload })).status).toBe(200);
    for (const jobId of [first, last]) expect((await storedInput(jobId)).equals(Buffer.from(payload))).toBe(true);
    expect((await gw.statuses.read(last))?.status).toBe('queued');
  });

  it('answers JSON cut in the middle of the payload with 400 and leaves no job behind', async () => {
    const jobId = uniqueId('job');
    const body = JSON.stringify({ job_id: jobId, model, payload: 'p'.repeat(2 * 1024 * 1024) });
    const response = await postJson(`${gw.url}/start-job`, body.slice(0, body.length / 2));
    expect(response.status).toBe(400);
    expect((await response.json()).message).toMatch(/^Malformed JSON body/);
    await expectNothingLeft(jobId);
  });

  it('leaves no job behind when the client goes away in the middle of the payload', async () => {
    const jobId = uniqueId('job');
    const body = Buffer.from(JSON.stringify({ job_id: jobId, model, payload: 'p'.repeat(4 * 1024 * 1024) }));
    const { port } = new URL(gw.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST /start-job HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body.subarray(0, body.length / 2));
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expectNothingLeft(jobId);
    // Nothing half-done holds the id either: the same job goes through.
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'again' })).status).toBe(200);
  });

  it('answers a payload with invalid UTF-8 inside with 400 and leaves no job behind', async () => {
    const jobId = uniqueId('job');
    const text = JSON.stringify({ job_id: jobId, model, payload: 'q'.repeat(3 * 1024 * 1024) });
    const body = Buffer.from(text);
    body[Math.floor(body.length / 2)] = 0xff;
    const answer = await sendInPieces(gw.url, body, [body]);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text).message).toMatch(/not valid UTF-8/);
    await expectNothingLeft(jobId);
  });

  it('answers a payload that is not a string as the schema does', async () => {
    for (const payload of [5, {}, [], true, { text: 'x' }]) {
      const response = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload });
      expect({ payload, status: response.status }).toEqual({ payload, status: 400 });
      expect((await response.json()).message).toMatch(/^Invalid job request: payload: Invalid input: expected string/);
    }
    // null is no payload: the inputs must have been uploaded.
    const response = await postJson(`${gw.url}/start-job`, { job_id: uniqueId('job'), model, payload: null });
    expect(response.status).toBe(404);
  });

  it('reads the last of repeated payload keys, as JSON.parse does', async () => {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, `{"job_id": "${jobId}", "model": ${JSON.stringify(model)}, "payload": "first", "payload": "second"}`)).status).toBe(200);
    expect((await storedInput(jobId)).toString()).toBe('second');
    const refused = await postJson(`${gw.url}/start-job`, `{"job_id": "${uniqueId('job')}", "model": ${JSON.stringify(model)}, "payload": "first", "payload": 7}`);
    expect(refused.status).toBe(400);
  });

  it('reads a gzip body, its 10 MB payload byte for byte', async () => {
    const jobId = uniqueId('job');
    const payload = JSON.stringify({ blob: 'x'.repeat(10 * 1024 * 1024), note: 'é😀' });
    const body = gzipSync(Buffer.from(JSON.stringify({ job_id: jobId, model, payload })));
    const response = await fetch(`${gw.url}/start-job`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body });
    expect(response.status).toBe(200);
    expect((await storedInput(jobId)).equals(Buffer.from(payload))).toBe(true);
  });

  it('counts decompressed bytes against the limit, and chunked ones as they come: 413, no job', async () => {
    const bomb = uniqueId('job');
    const zipped = gzipSync(Buffer.from(JSON.stringify({ job_id: bomb, model, payload: 'z'.repeat(17 * 1024 * 1024) })));
    const response = await fetch(`${gw.url}/start-job`, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: zipped });
    expect(response.status).toBe(413);
    await expectNothingLeft(bomb);
    const chunked = uniqueId('job');
    const text = Buffer.from(JSON.stringify({ job_id: chunked, model, payload: 'c'.repeat(17 * 1024 * 1024) }));
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < text.length; i += 1024 * 1024) controller.enqueue(text.subarray(i, i + 1024 * 1024));
        controller.close();
      },
    });
    const cut = await fetch(`${gw.url}/start-job`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit).catch(() => undefined);
    if (cut) expect(cut.status).toBe(413);
    await waitFor(async () => !(await gw.storage.jobExists(chunked)), 2000, 'nothing stored');
    await expectNothingLeft(chunked);
  });
});

// The payload reaches storage as a list of Buffers: S3 (through minio) must take it as one object.
describe('a streamed payload on S3 storage', () => {
  let s3: S3ServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    s3 = await startS3Server();
    gw = await startGateway({ storage: storageSection('s3-single-bucket', s3), gateway: { payload_limit: '16mb' } });
  });
  afterAll(async () => {
    await gw.close();
    await s3.stop();
  });

  it('stores payloads of many Buffers, and an empty one, byte for byte', async () => {
    for (const payload of ['', `${'€'.repeat(400_000)}😀`]) {
      const jobId = uniqueId('job');
      expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload })).status).toBe(200);
      const stored = Buffer.from(await (await fetch(`${gw.url}/jobs/${jobId}/input`)).arrayBuffer());
      expect(stored.equals(Buffer.from(payload))).toBe(true);
    }
  });
});
