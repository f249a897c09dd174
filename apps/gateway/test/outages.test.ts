import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { modelQueueName } from '@shepherd/contracts';
import { startRedisServer, startS3Server, uniqueId, waitFor, type RedisServerHandle, type S3ServerHandle } from '@shepherd/testing';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

describe('when Redis goes away', () => {
  let redis: RedisServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    redis = await startRedisServer();
    gw = await startGateway({ storage: storageSection('filesystem'), redis: { url: redis.url } });
  });
  afterAll(async () => {
    await gw.close();
    await redis.stop();
  });

  it('answers 503 naming Redis, stays up, and recovers by itself', async () => {
    await redis.stop();
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    expect(response.status).toBe(503);
    expect((await response.json()).message).toBe('Redis is unavailable; retry later');
    expect(await gw.storage.jobExists(jobId)).toBe(false);
    expect((await fetch(`${gw.url}/status`)).status).toBe(503);

    await redis.start();
    await waitFor(async () => (await fetch(`${gw.url}/status`)).status === 200, 15_000, 'the gateway to reconnect');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
  });
});

describe('when storage goes away', () => {
  let s3: S3ServerHandle;
  let gw: Harness;
  beforeAll(async () => {
    s3 = await startS3Server();
    gw = await startGateway({ storage: storageSection('s3-bucket-per-job', s3) });
  });
  afterAll(async () => {
    await gw.close();
    await s3.stop();
  });

  it('answers 503 naming storage, keeps no claim, and recovers when it returns', async () => {
    const { port, directory } = s3;
    await s3.stop();
    const jobId = uniqueId('job');
    const response = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    expect(response.status).toBe(503);
    expect((await response.json()).message).toBe('Storage is unavailable; retry later');
    expect(response.headers.get('retry-after')).toBe('1');
    expect(await gw.redis.get(gw.keys.status(jobId))).toBeNull();

    s3 = await startS3Server({ port, directory });
    const retry = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    expect(retry.status).toBe(200);
  });
});

describe('a submit that fails half-way', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem') });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('leaves nothing that would make the retry answer 409', async () => {
    // Break the model queue for real: BullMQ's add script fails on a key of the wrong type.
    const metaKey = `${gw.config.redis.prefix}:${modelQueueName(model)}:meta`;
    await gw.redis.set(metaKey, 'not a hash');
    const jobId = uniqueId('job');
    const failed = await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' });
    expect(failed.status).toBe(500);
    expect(await gw.storage.jobExists(jobId)).toBe(false);
    expect(await gw.statuses.read(jobId)).toBeNull();

    await gw.redis.del(metaKey);
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
  });

  it('keeps inputs the client uploaded when the start fails', async () => {
    const metaKey = `${gw.config.redis.prefix}:${modelQueueName(model)}:meta`;
    const jobId = uniqueId('job');
    expect((await fetch(`${gw.url}/jobs/${jobId}/inputs/input`, { method: 'PUT', body: 'mine' })).status).toBe(201);
    await gw.redis.set(metaKey, 'not a hash');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model })).status).toBe(500);
    expect(await gw.storage.readStatus(jobId)).toBeNull();
    expect(await gw.storage.listFiles(jobId, 'inputs')).toEqual(['input']);
    await gw.redis.del(metaKey);
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model })).status).toBe(200);
  });
});
