import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { jobStatus, modelQueueName, type JobData, type JobStatus, type Model } from '@shepherd/contracts';
import { createRedis, JobQueues, MetricsStore, RedisKeys, SheepRegistry, StatusStore, WorkSignal } from '@shepherd/queue';
import { FilesystemStorage, StorageUnavailableError } from '@shepherd/storage';
import { deleteKeys, REDIS_URL, tempDir, uniqueId } from '@shepherd/testing';
import type { HeldJob } from './job-run';
import { JobSource } from './job-source';
import { Settler } from './settle';
import { Staging } from './staging';

// The settle module against real Redis, a real BullMQ queue and filesystem
// storage in a temp dir; a fresh key prefix per test.

const MODEL: Model = { name: 'echo', version: 'v1' };
const QUEUE = modelQueueName(MODEL);

/** Storage whose status writes fail as if the disk were away: the outcome cannot be recorded. */
class StatusDownStorage extends FilesystemStorage {
  override async writeStatus(): Promise<void> {
    throw new StorageUnavailableError('the status disk is away');
  }
}

interface Setup {
  prefix: string;
  keys: RedisKeys;
  redis: Redis;
  queues: JobQueues;
  worker: Worker;
  dir: string;
  storage: FilesystemStorage;
  staging: Staging;
}

let s: Setup;
const log = pino({ level: 'silent' });

beforeEach(async () => {
  const prefix = uniqueId('settle');
  const keys = new RedisKeys(prefix);
  const redis = createRedis(REDIS_URL, 'worker');
  const dir = tempDir('settle');
  const storage = new FilesystemStorage(join(dir, 'storage'));
  const worker = new Worker(QUEUE, null, { connection: redis, prefix, autorun: false });
  s = { prefix, keys, redis, queues: new JobQueues(redis, keys), worker, dir, storage, staging: new Staging(storage, join(dir, 'sheep')) };
});

afterEach(async () => {
  await s.worker.close(true);
  await s.queues.queue(QUEUE).obliterate({ force: true });
  await s.queues.close();
  s.redis.disconnect();
  await deleteKeys(`${s.prefix}:`);
});

function settler(options: { storage?: FilesystemStorage; maxHandBacks?: number } = {}): { settler: Settler; statuses: StatusStore } {
  const statuses = new StatusStore(s.redis, options.storage ?? s.storage, s.keys);
  const created = new Settler({
    sheepId: 'sheep1',
    redis: s.redis,
    keys: s.keys,
    statuses,
    metrics: new MetricsStore(s.redis, s.keys),
    staging: s.staging,
    worker: { maxHandBacks: options.maxHandBacks ?? 10, handBackDelayMs: 100 },
    log,
  });
  return { settler: created, statuses };
}

/** A stored job, queued, taken from BullMQ as a worker takes it, and in `processing`. */
async function take(jobId = uniqueId('job')): Promise<HeldJob> {
  const data: JobData = { jobId, model: MODEL, enqueuedAt: new Date().toISOString() };
  await s.storage.createJob(jobId);
  const statuses = new StatusStore(s.redis, s.storage, s.keys);
  await statuses.write(jobId, jobStatus.queued({ model: MODEL, enqueuedAt: data.enqueuedAt }));
  await s.queues.add(data);
  const held = await takeAgain(data);
  held.startedAt = new Date().toISOString();
  await statuses.write(jobId, jobStatus.processing({ model: MODEL, enqueuedAt: data.enqueuedAt, startedAt: held.startedAt }));
  mkdirSync(s.staging.jobDir(jobId), { recursive: true });
  return held;
}

async function takeAgain(data: JobData): Promise<HeldJob> {
  const token = uniqueId('token');
  const job = (await s.worker.getNextJob(token, { block: false })) as Job<JobData> | undefined;
  if (!job) throw new Error('no job to take');
  expect(job.data.jobId).toBe(data.jobId);
  return { job, data, token, queue: QUEUE, attempts: 0 };
}

async function stateOf(held: HeldJob): Promise<string> {
  return s.queues.queue(QUEUE).getJobState(held.job.id ?? '');
}

async function statusOf(jobId: string): Promise<JobStatus | null> {
  return new StatusStore(s.redis, s.storage, s.keys).read(jobId);
}

describe('Settler', () => {
  it('records done, completes the BullMQ job and removes the staging dir', async () => {
    const { settler: settle } = settler();
    const held = await take();
    await s.redis.hset(s.keys.handBacks, held.data.jobId, 2);

    const settled = await settle.settle(held, { kind: 'done' });

    expect(settled).toEqual({ status: 'done', movedTo: 'completed' });
    expect((await statusOf(held.data.jobId))?.status).toBe('done');
    expect((await s.storage.readStatus(held.data.jobId))?.status).toBe('done');
    expect(await stateOf(held)).toBe('completed');
    expect(existsSync(s.staging.jobDir(held.data.jobId))).toBe(false);
    expect(await s.redis.hexists(s.keys.handBacks, held.data.jobId)).toBe(0);
  });

  it('never turns a done job failed when an error follows the done record', async () => {
    const { settler: settle } = settler();
    const held = await take();
    // The completion fails: this token does not hold the job's lock.
    const stale: HeldJob = { ...held, token: 'not-the-lock' };

    const settled = await settle.settle(stale, { kind: 'done' });
    expect(settled).toEqual({ status: 'done', movedTo: null });
    expect((await statusOf(held.data.jobId))?.status).toBe('done');
    expect(await stateOf(held)).toBe('active');

    // A later failure of the same job (its run reported twice) leaves it done.
    const again = await settle.settle(held, { kind: 'failed', details: { message: 'boom' } });
    expect(again.status).toBeNull();
    expect(again.movedTo).toBe('completed');
    expect((await statusOf(held.data.jobId))?.status).toBe('done');
    expect(await stateOf(held)).toBe('completed');
  });

  it('hands back a failure it cannot record, counted and delayed, and fails it after the bound', async () => {
    const { settler: settle } = settler({ storage: new StatusDownStorage(join(s.dir, 'storage')), maxHandBacks: 2 });
    let held = await take();
    const failure = { kind: 'failed' as const, details: { message: 'the model crashed' } };

    const first = await settle.settle(held, failure);
    expect(first).toEqual({ status: null, movedTo: 'delayed', handBacks: 1, delayMs: 100 });
    expect(await stateOf(held)).toBe('delayed');

    await held.job.promote();
    held = await takeAgain(held.data);
    const second = await settle.settle(held, failure);
    expect(second).toEqual({ status: null, movedTo: 'delayed', handBacks: 2, delayMs: 200 });

    await held.job.promote();
    held = await takeAgain(held.data);
    const third = await settle.settle(held, failure);
    expect(third).toEqual({ status: null, movedTo: 'failed' });
    expect(await stateOf(held)).toBe('failed');
    const job = await s.queues.queue(QUEUE).getJob(held.job.id ?? '');
    expect(job?.failedReason).toContain('(handed back 2 times)');
    expect(await s.redis.hexists(s.keys.handBacks, held.data.jobId)).toBe(0);
  });

  it('fails a job whose data is gone for good, its status in Redis only', async () => {
    const { settler: settle } = settler();
    const held = await take();
    await s.storage.deleteJob(held.data.jobId);

    const settled = await settle.settle(held, { kind: 'failed', details: { message: 'Data for the job does not exist' }, dataGone: true });

    expect(settled).toEqual({ status: 'failed', movedTo: 'failed' });
    expect((await statusOf(held.data.jobId))?.status).toBe('failed');
    expect(await stateOf(held)).toBe('failed');
  });

  it('fails an invalid job at once, never retried, without touching the filesystem', async () => {
    const { settler: settle, statuses } = settler();
    const queue: Queue = s.queues.queue(QUEUE);
    await s.redis.sadd(s.keys.modelQueues, QUEUE);
    const enqueuedAt = new Date().toISOString();
    // attempts: 3 — a plain failure would be retried; an UnrecoverableError is not.
    const climbing = await queue.add('job', { jobId: '..', model: MODEL, enqueuedAt }, { attempts: 3 });
    const noTime = await queue.add('job', { jobId: 'valid-id', model: MODEL }, { attempts: 3 });
    await statuses.cache('valid-id', jobStatus.queued({ model: MODEL, enqueuedAt }));
    // Storage may make its root; the sheep's side must stay untouched.
    const sheepSide = () => readdirSync(s.dir).filter((name) => name !== 'storage');
    const before = sheepSide();

    const subscriber = createRedis(REDIS_URL, 'subscriber');
    const keys = s.keys;
    const source = new JobSource({
      sheepId: 'sheep1',
      connection: s.redis,
      keys,
      queues: s.queues,
      registry: new SheepRegistry(s.redis, keys),
      signal: new WorkSignal(subscriber, keys),
      otherSheep: [],
      lockDurationMs: 30_000,
      pollIntervalMs: 20,
      jobIdRule: s.storage.jobIdRule,
      onInvalid: async (rejected) => {
        await settle.reject(rejected);
      },
      onStalledFailure: () => undefined,
    });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 300);
    const taken = await source.next(() => null, () => false, stop.signal);
    await source.close();
    subscriber.disconnect();

    expect(taken).toBeNull();
    for (const job of [climbing, noTime]) {
      expect(await queue.getJobState(job.id ?? '')).toBe('failed');
      expect((await queue.getJob(job.id ?? ''))?.attemptsMade).toBe(1);
    }
    expect((await queue.getJob(climbing.id ?? ''))?.failedReason).toContain('Invalid job_id');
    expect((await queue.getJob(noTime.id ?? ''))?.failedReason).toContain('enqueuedAt');
    expect(sheepSide()).toEqual(before);
    expect(existsSync(join(s.dir, 'sheep'))).toBe(false);
    // The valid id's status says what was wrong (in Redis: it has no storage).
    const status = await statuses.read('valid-id');
    expect(status?.status).toBe('failed');
    expect(status?.error_details?.message).toContain('enqueuedAt');
  });
});
