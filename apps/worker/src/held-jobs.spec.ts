import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { join } from 'node:path';
import pino from 'pino';
import { jobStatus, modelQueueName, type JobData, type Model } from '@shepherd/contracts';
import { createRedis, JobQueues, MetricsStore, RedisKeys, StatusStore } from '@shepherd/queue';
import { FilesystemStorage } from '@shepherd/storage';
import { deleteKeys, REDIS_URL, tempDir, uniqueId } from '@shepherd/testing';
import { HeldJobs } from './held-jobs';
import { Settler } from './settle';
import { Staging } from './staging';

// A worker that comes back returns at once what its killed predecessor held.

const MODEL: Model = { name: 'echo', version: 'v1' };
const QUEUE = modelQueueName(MODEL);
const log = pino({ level: 'silent' });

let prefix: string;
let keys: RedisKeys;
let redis: Redis;
let queues: JobQueues;
let worker: Worker;
let storage: FilesystemStorage;
let statuses: StatusStore;
let settler: Settler;

beforeEach(() => {
  prefix = uniqueId('held');
  keys = new RedisKeys(prefix);
  redis = createRedis(REDIS_URL, 'worker');
  queues = new JobQueues(redis, keys);
  worker = new Worker(QUEUE, null, { connection: redis, prefix, autorun: false, lockDuration: 30_000 });
  const dir = tempDir('held');
  storage = new FilesystemStorage(join(dir, 'storage'));
  statuses = new StatusStore(redis, storage, keys);
  const staging = new Staging(storage, join(dir, 'sheep'));
  const metrics = new MetricsStore(redis, keys);
  settler = new Settler({ sheepId: 's1', redis, keys, statuses, metrics, staging, worker: { maxHandBacks: 1, handBackDelayMs: 100 }, log });
});

afterEach(async () => {
  await worker.close(true);
  await queues.queue(QUEUE).obliterate({ force: true });
  await queues.close();
  redis.disconnect();
  await deleteKeys(`${prefix}:`);
});

function heldJobs(): HeldJobs {
  return new HeldJobs({ sheepId: 's1', redis, keys, queues, lockDurationMs: 30_000, log });
}

/** A job taken and in `processing`, as a worker leaves it when it is killed. */
async function takeAndDie(): Promise<{ data: JobData; job: Job; token: string }> {
  const data: JobData = { jobId: uniqueId('job'), model: MODEL, enqueuedAt: new Date().toISOString() };
  await storage.createJob(data.jobId);
  await statuses.write(data.jobId, jobStatus.queued({ model: MODEL, enqueuedAt: data.enqueuedAt }));
  await queues.add(data);
  const token = uniqueId('token');
  const job = (await worker.getNextJob(token, { block: false })) as Job;
  await statuses.write(data.jobId, jobStatus.processing({ model: MODEL, enqueuedAt: data.enqueuedAt }));
  heldJobs().hold(data.jobId, QUEUE, token);
  return { data, job, token };
}

describe('HeldJobs', () => {
  it('returns a job left by a killed worker to wait at once, queued again', async () => {
    const { data, job } = await takeAndDie();

    expect(await heldJobs().returnLeftovers(settler)).toBe(1);

    expect(['waiting', 'prioritized']).toContain(await queues.queue(QUEUE).getJobState(job.id ?? '')); // every job carries a priority
    expect((await statuses.read(data.jobId))?.status).toBe('queued');
    expect(await redis.hlen(keys.sheepJobs('s1'))).toBe(0);
    expect(await redis.hget(keys.handBacks, data.jobId)).toBe('1');
  });

  it('leaves alone a job that finished meanwhile, and fails one returned past the bound', async () => {
    const left = await takeAndDie();
    await left.job.moveToCompleted({ done: true }, left.token, false); // its completion landed after all
    expect(await heldJobs().returnLeftovers(settler)).toBe(0);
    expect(await queues.queue(QUEUE).getJobState(left.job.id ?? '')).toBe('completed');
    expect(await redis.hlen(keys.sheepJobs('s1'))).toBe(0);

    const { data, job } = await takeAndDie();
    await redis.hset(keys.handBacks, data.jobId, 1); // maxHandBacks is 1: this return is one too many
    await heldJobs().returnLeftovers(settler);
    expect(await queues.queue(QUEUE).getJobState(job.id ?? '')).toBe('failed');
    expect((await statuses.read(data.jobId))?.status).toBe('failed');
  });
});
