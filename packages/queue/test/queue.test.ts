import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { modelQueueName, sheepQueueName, type JobStatus } from '@shepherd/contracts';
import { createStorage, type JobStorage } from '@shepherd/storage';
import { deleteKeys, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { createRedis, JobQueues, MetricsStore, RedisKeys, SheepRegistry, StatusEvents, StatusStore, whenReady } from '../src';

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

  it('records a non-durable transition (processing) in Redis only; the durable record stays as it was', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const queued: JobStatus = { status: 'queued', model, enqueued_at: new Date().toISOString() };
    await statuses.write(jobId, queued);
    const processing: JobStatus = { ...queued, status: 'processing', processing_started_at: new Date().toISOString(), sheep_id: 's1' };
    expect(await statuses.transition(jobId, processing, { durable: false })).toMatchObject({ written: true, durable: false });
    expect(await statuses.read(jobId)).toEqual(processing);
    expect(await storage.readStatus(jobId)).toEqual(queued);
    // The end is durable again, and the state machine saw `processing` in Redis.
    const done: JobStatus = { ...processing, status: 'done', finished_at: new Date().toISOString() };
    expect(await statuses.transition(jobId, done, { from: ['processing'] })).toMatchObject({ written: true, durable: true });
    expect(await storage.readStatus(jobId)).toEqual(done);
  });

  it('caches a record read from storage only where Redis has none: a stale read never overwrites a newer status', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const queued: JobStatus = { status: 'queued', model, enqueued_at: new Date().toISOString() };
    await statuses.write(jobId, queued);
    const done: JobStatus = { ...queued, status: 'done', finished_at: new Date().toISOString() };
    await redis.set(keys.status(jobId), JSON.stringify(done)); // a worker finished it meanwhile
    await statuses.cache(jobId, queued); // what a reader saw in storage a moment before
    expect(await statuses.read(jobId)).toEqual(done);
    await redis.del(keys.status(jobId));
    await statuses.cache(jobId, queued);
    expect(await statuses.read(jobId)).toEqual(queued);
  });

  it('gathers metric increments in memory and writes them in one flush', async () => {
    const metrics = new MetricsStore(redis, keys);
    metrics.observe('runner', 's1', 0.02);
    metrics.observe('runner', 's1', 3);
    metrics.jobFinished('s1', model, 'done');
    metrics.jobFinished('s1', model, 'done');
    metrics.modelLoaded('s1');
    expect(await redis.exists(keys.stageMetrics, keys.finishedMetrics, keys.modelLoadMetrics)).toBe(0); // not yet written
    await metrics.flush();
    expect(await metrics.finished()).toEqual([{ sheep: 's1', model: 'm:1', status: 'done', count: 2 }]);
    expect(await metrics.modelLoads()).toEqual({ s1: 1 });
    const [runner] = await metrics.stages();
    expect(runner).toMatchObject({ stage: 'runner', sheep: 's1', count: 2, sum: 3.02 });
    // A sum that is a whole number still adds to a fractional one (HINCRBYFLOAT, never HINCRBY).
    metrics.observe('runner', 's1', 1);
    await waitFor(async () => (await metrics.stages())[0]?.count === 3, 2000, 'the timed flush');
    expect((await metrics.stages())[0]?.sum).toBeCloseTo(4.02);
  });

  it('lets one claim win, makes a second submit wait, and lets a retry take over a lapsed claim', async () => {
    const jobId = uniqueId('job');
    const accepted: JobStatus = { status: 'accepted', model };
    const queue = modelQueueName(model);
    const claims = await Promise.all([statuses.claim(jobId, accepted, 'a', 5000, queue), statuses.claim(jobId, accepted, 'b', 5000, queue)]);
    expect(claims.map((claim) => claim.kind).sort()).toEqual(['busy', 'claimed']);
    expect(await statuses.openClaims(60_000)).toEqual([]); // none a minute old
    expect((await statuses.openClaims(-1000)).find((claim) => claim.jobId === jobId)).toEqual({ jobId, queue, leased: true });

    // The holder died: its lease lapses and a retry takes over.
    await redis.del(keys.submitLease(jobId));
    expect(await statuses.claim(jobId, accepted, 'c', 5000, queue)).toEqual({ kind: 'claimed', tookOver: true });
    expect(await statuses.releaseClaim(jobId, 'a')).toBe(false); // not a's any more
    expect(await statuses.releaseClaim(jobId, 'c')).toBe(true);
    expect(await redis.get(keys.status(jobId))).toBeNull();
    expect((await statuses.claim(jobId, accepted, 'd', 5000, queue)).kind).toBe('claimed');

    // Committed: the next submit of the id finds the job.
    await statuses.commitClaim(jobId, { status: 'queued', model, enqueued_at: new Date().toISOString() });
    expect(await statuses.claim(jobId, accepted, 'e', 5000, queue)).toMatchObject({ kind: 'exists', status: { status: 'queued' } });
    expect(await redis.exists(keys.submitLease(jobId))).toBe(0);
    expect(await redis.zscore(keys.pendingSubmits, jobId)).toBeNull();
  });

  it('drops a pending-claim entry whose job is past accepted (a lost removal), and keeps one with no status for the reconciler', async () => {
    const committed = uniqueId('job');
    const unknown = uniqueId('job');
    await redis.set(keys.status(committed), JSON.stringify({ status: 'queued', model }));
    for (const id of [committed, unknown]) {
      await redis.zadd(keys.pendingSubmits, Date.now() - 10_000, id);
      await redis.hset(keys.pendingQueues, id, 'model.m@1');
    }
    const open = await statuses.openClaims(5000);
    expect(open.find((claim) => claim.jobId === committed)).toBeUndefined();
    expect(open.find((claim) => claim.jobId === unknown)).toEqual({ jobId: unknown, queue: 'model.m@1', leased: false });
    expect(await redis.zscore(keys.pendingSubmits, committed)).toBeNull();
    expect(await redis.hget(keys.pendingQueues, committed)).toBeNull();
    await statuses.releaseClaim(unknown, '');
  });

  it('tags every key of a job with its id, and BullMQ queue names only on a cluster', () => {
    const tagged = [keys.status('j1'), keys.events('j1'), keys.submitLease('j1'), keys.uploads('j1')];
    for (const key of tagged) expect(key).toMatch(/^[^{]*\{j1\}$/);
    expect(keys.bullName('model.m@1')).toBe('model.m@1');
    expect(new RedisKeys('p', { cluster: true }).bullName('model.m@1')).toBe('{model.m@1}');
  });

  it('refuses a transition the job life does not allow, and writes nothing', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    await statuses.write(jobId, { status: 'queued', model, enqueued_at: new Date().toISOString() });
    await statuses.write(jobId, { status: 'processing', model });
    await statuses.write(jobId, { status: 'done', model });
    for (const late of ['failed', 'queued', 'processing'] as const) {
      const result = await statuses.transition(jobId, { status: late, model });
      expect(result).toMatchObject({ written: false, current: { status: 'done' } });
    }
    expect((await storage.readStatus(jobId))?.status).toBe('done');
    expect((await statuses.read(jobId))?.status).toBe('done');
    // `from` narrows further: a hand-back only moves a processing job.
    const other = uniqueId('job');
    await storage.createJob(other);
    await statuses.write(other, { status: 'queued', model });
    expect(await statuses.transition(other, { status: 'queued', model }, { from: ['processing'] })).toMatchObject({ written: false });
  });

  it('records a status in Redis alone when asked and the job storage is gone', async () => {
    const jobId = uniqueId('job');
    await expect(statuses.transition(jobId, { status: 'failed', model, error_details: { message: 'gone' } })).rejects.toThrow();
    const result = await statuses.transition(jobId, { status: 'failed', model, error_details: { message: 'gone' } }, { redisIfNoStorage: true });
    expect(result).toMatchObject({ written: true, durable: false });
    expect((await statuses.read(jobId))?.error_details?.message).toBe('gone');
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
    expect(await queues.waitingCount(modelQueueName(model))).toBe(1);
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
