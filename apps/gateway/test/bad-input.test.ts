import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startS3Server, uniqueId, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

describe('bad input on the bucket-per-job layout', () => {
  let s3: S3ServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    s3 = await startS3Server();
    gw = await startGateway({
      storage: storageSection('s3-bucket-per-job', s3),
      gateway: { payload_limit: '64kb', upload_limit: '100kb' },
    });
  });
  afterAll(async () => {
    await gw.close();
    await s3.stop();
  });

  async function expectError(response: Response, status: number, message: RegExp): Promise<void> {
    expect(response.status).toBe(status);
    const body = await response.json();
    expect(body.message).toMatch(message);
  }

  it('answers malformed JSON with 400', async () => {
    await expectError(await postJson(`${gw.url}/start-job`, '{"job_id": "abc", '), 400, /^Malformed JSON body/);
  });

  it('answers a missing or invalid model with 400 naming the field', async () => {
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: 'abc' }), 400, /model: .*expected object/);
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: 'abc', model: { name: 'm' } }), 400, /model\.version/);
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: 'abc', model: { name: '../etc', version: '1' } }), 400, /model\.name/);
    await expectError(await postJson(`${gw.url}/start-job`, { job_id: 'abc', model, extra: 1 }), 400, /Unrecognized key.*extra/);
    await expectError(await postJson(`${gw.url}/start-job`, [1, 2]), 400, /expected object/);
  });

  it('answers job ids the bucket layout cannot hold with 400 saying what is allowed', async () => {
    for (const jobId of ['', 'a/b', '../x', 'a..b', 'UPPER', 'x'.repeat(64), 'ab']) {
      const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
      expect([jobId, response.status]).toEqual([jobId, 400]);
      const { message } = await response.json();
      expect(message).toMatch(jobId === '' ? /job_id: must not be empty/ : /allowed are 3-63 characters: lowercase letters/);
    }
    await expectError(await fetch(`${gw.url}/jobs/UPPER/inputs/input`, { method: 'PUT', body: 'x' }), 400, /allowed are/);
  });

  it('answers a payload over the limit with 413 and creates nothing', async () => {
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x'.repeat(70 * 1024) });
    await expectError(response, 413, /larger than the limit of 65536 bytes/);
    expect(await gw.storage.jobExists(jobId)).toBe(false);
  });

  it('answers an upload declared over the limit with 413 and leaves no job behind', async () => {
    const declared = uniqueId('job');
    await expectError(
      await fetch(`${gw.url}/jobs/${declared}/inputs/big`, { method: 'PUT', body: Buffer.alloc(150 * 1024) }),
      413,
      /limit of 102400 bytes/,
    );
    expect(await gw.storage.jobExists(declared)).toBe(false);

  });

  it('answers a bad wait_ready timeout with 400', async () => {
    await expectError(await fetch(`${gw.url}/jobs/abc/wait_ready?timeout=soon`), 400, /Invalid timeout "soon"/);
  });
});

// s3rver has no multipart uploads, which an upload of unknown size needs:
// the chunked case runs on the filesystem backend.
describe('a chunked upload over the limit', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem'), gateway: { upload_limit: '100kb' } });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('is cut off with 413 and leaves no job behind', async () => {
    const chunked = uniqueId('job');
    const body = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(10 * 1024));
        controller.close();
      },
    });
    const response = await fetch(`${gw.url}/jobs/${chunked}/inputs/big`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    expect(response.status).toBe(413);
    expect((await response.json()).message).toMatch(/limit of 102400 bytes/);
    expect(await gw.storage.jobExists(chunked)).toBe(false);
  });
});
