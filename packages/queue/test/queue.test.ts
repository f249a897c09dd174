import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { modelQueueName, sheepQueueName, type JobStatus } from '@shepherd/contracts';
import { createStorage, type JobStorage } from '@shepherd/storage';
import { deleteKeys, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { createRedis, JobQueues, RedisKeys, SheepRegistry, StatusEvents, StatusStore, whenReady } from '../src';

const model = { name: 'm', version: '1' };

describe('the Redis side', () => {
  const keys = new RedisKeys(uniqueId('qtest'));
  let redis: Redis;
  let subscriber: Redis;
  let storage: JobStorage;
  let statuses: StatusStore;
  let queues: JobQueues;

  beforeAll(async () => {
    redis = createRedis(REDIS_URL, 'producer');
    subscriber = createRedis(REDIS_URL, 'subscriber');
    await whenReady(redis, 5000);
    storage = createStorage({ backend: 'filesystem', root: tempDir('queue-test') });
    statuses = new StatusStore(redis, storage, keys);
    queues = new JobQueues(redis, keys);
  });
  afterAll(async () => {
    await queues.close();
    redis.disconnect();
    subscriber.disconnect();
    await deleteKeys(`${keys.prefix}:`);
  });

  it('writes status to storage and Redis, and reads it back from storage when Redis lost it', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const status: JobStatus = { status: 'queued', model, enqueued_at: new Date().toISOString() };
    await statuses.write(jobId, status);
    expect(await storage.readStatus(jobId)).toEqual(status);
    expect(JSON.parse((await redis.get(keys.status(jobId))) ?? 'null')).toEqual(status);
    await redis.del(keys.status(jobId));
    expect(await statuses.read(jobId)).toEqual(status);
    expect(await redis.get(keys.status(jobId))).not.toBeNull(); // cached again
  });

  it('lets one claim win', async () => {
    const jobId = uniqueId('job');
    const accepted: JobStatus = { status: 'accepted', model };
    const claims = await Promise.all([statuses.claim(jobId, accepted), statuses.claim(jobId, accepted)]);
    expect(claims.sort()).toEqual([false, true]);
    await statuses.forget(jobId);
    expect(await statuses.claim(jobId, accepted)).toBe(true);
  });

  it('announces each status change to the listeners of that job only', async () => {
    const events = new StatusEvents(subscriber, keys);
    await events.start();
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const seen: string[] = [];
    const other: string[] = [];
    const stop = events.listen(jobId, (status) => seen.push(status.status));
    events.listen('someone-else', (status) => other.push(status.status));
    await statuses.write(jobId, { status: 'processing', model });
    await statuses.write(jobId, { status: 'done', model });
    await waitFor(() => seen.length === 2, 5000, 'two events');
    expect(seen).toEqual(['processing', 'done']);
    expect(other).toEqual([]);
    stop();
    expect(events.waiting).toBe(1);
  });

  it('keeps one BullMQ job per job id and remembers model queues', async () => {
    const jobId = '42'; // an integer id, which BullMQ refuses as it is
    const data = { jobId, model, enqueuedAt: new Date().toISOString() };
    await queues.add(data);
    await queues.add(data);
    const queue = queues.queue(modelQueueName(model));
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect((await queue.getJob('#42'))?.data).toEqual(data);
    expect(await queues.modelQueueNames()).toEqual([modelQueueName(model)]);

    await queues.add({ ...data, jobId: 'pinned', sheepId: 's1' });
    expect((await queues.queue(sheepQueueName('s1')).getJob('pinned'))?.data.sheepId).toBe('s1');
    expect(await queues.modelQueueNames()).toEqual([modelQueueName(model)]);
  });

  it('forgets a sheep whose worker stopped beating', async () => {
    const registry = new SheepRegistry(redis, keys);
    await registry.publish('s1', { model, request: 'j', heartbeatAt: new Date().toISOString() }, 200);
    expect((await registry.read(['s1', 's2'])).get('s1')).toMatchObject({ request: 'j' });
    expect((await registry.read(['s1', 's2'])).get('s2')).toBeNull();
    await waitFor(async () => (await registry.read(['s1'])).get('s1') === null, 5000, 'the state to expire');
  });
});
