import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { modelQueueName, sheepQueueName, type Model } from '@shepherd/contracts';
import { createRedis, JobQueues, RedisKeys, SheepRegistry, WorkSignal } from '@shepherd/queue';
import { deleteKeys, REDIS_URL, uniqueId } from '@shepherd/testing';
import { JobSource, type TakenJob } from './job-source';

// JobSource against real Redis and real BullMQ queues, a fresh key prefix per test.

const A: Model = { name: 'alpha', version: 'v1' };
const B: Model = { name: 'beta', version: 'v1' };
const C: Model = { name: 'gamma', version: 'v1' };

interface Setup {
  prefix: string;
  keys: RedisKeys;
  connection: Redis;
  producer: Redis;
  subscriber: Redis;
  queues: JobQueues;
  registry: SheepRegistry;
  signal: WorkSignal;
  sources: JobSource[];
  queueNames: Set<string>;
}

let s: Setup;

beforeEach(async () => {
  const prefix = uniqueId('jobsrc');
  const keys = new RedisKeys(prefix);
  const connection = createRedis(REDIS_URL, 'worker');
  const producer = createRedis(REDIS_URL, 'producer');
  const subscriber = createRedis(REDIS_URL, 'subscriber');
  const signal = new WorkSignal(subscriber, keys);
  await signal.start();
  s = {
    prefix,
    keys,
    connection,
    producer,
    subscriber,
    queues: new JobQueues(producer, keys),
    registry: new SheepRegistry(producer, keys),
    signal,
    sources: [],
    queueNames: new Set(),
  };
});

afterEach(async () => {
  await Promise.all(s.sources.map((source) => source.close()));
  for (const name of s.queueNames) await s.queues.queue(name).obliterate({ force: true });
  await s.queues.close();
  s.connection.disconnect();
  s.producer.disconnect();
  s.subscriber.disconnect();
  await deleteKeys(`${s.prefix}:`);
});

function source(options: { sheepId?: string; otherSheep?: string[]; pollIntervalMs?: number } = {}): JobSource {
  const created = new JobSource({
    sheepId: options.sheepId ?? 'me',
    connection: s.connection,
    keys: s.keys,
    queues: s.queues,
    registry: s.registry,
    signal: s.signal,
    otherSheep: options.otherSheep ?? ['other'],
    lockDurationMs: 30_000,
    pollIntervalMs: options.pollIntervalMs ?? 50,
    onStalledFailure: () => undefined,
  });
  s.sources.push(created);
  return created;
}

async function add(jobId: string, model: Model, sheepId?: string): Promise<void> {
  const data = { jobId, model, enqueuedAt: new Date().toISOString(), ...(sheepId ? { sheepId } : {}) };
  s.queueNames.add(s.queues.queueName(data));
  await s.queues.add(data);
}

/** next() with a deadline: null when nothing was taken by then. */
async function take(
  from: JobSource,
  held: Model | null = null,
  busy = false,
  withinMs = 5_000, // generous: a loaded CI machine is slow to open a queue's first worker
): Promise<TakenJob | null> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), withinMs);
  try {
    return await from.next(() => held, () => busy, stop.signal);
  } finally {
    clearTimeout(timer);
  }
}

const idOf = (taken: TakenJob | null): string | null => taken?.data.jobId ?? null;

describe('JobSource', () => {
  it('looks at its own queue again at once when a pinned job is announced, and every poll interval when none is', async () => {
    const jobs = source({ pollIntervalMs: 400 });
    await add('a1', A);
    expect(idOf(await take(jobs, A))).toBe('a1'); // its own queue was found empty
    await add('pinned', B, 'me'); // announced on the work channel
    await add('a2', A);
    await add('a3', A);
    expect(idOf(await take(jobs, A))).toBe('pinned');
    expect(idOf(await take(jobs, A))).toBe('a2'); // its own queue found empty again
    // Added without the announcement (a wake-up lost): found within the poll interval, not at once.
    const own = sheepQueueName('me');
    await s.queues.queue(own).add('job', { jobId: 'quiet', model: B, enqueuedAt: new Date().toISOString(), sheepId: 'me' }, { jobId: 'quiet', priority: 1 });
    expect(idOf(await take(jobs, A))).toBe('a3');
    const started = Date.now();
    expect(idOf(await take(jobs, A))).toBe('quiet');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('takes a job pinned to its sheep first, then one of the model it holds', async () => {
    const jobs = source();
    await add('other-model', B);
    await add('held-model', A);
    await add('pinned', C, 'me');
    await add('pinned-elsewhere', A, 'someone');

    const pinned = await take(jobs, A);
    expect(idOf(pinned)).toBe('pinned');
    expect(pinned?.queue).toBe(sheepQueueName('me'));
    expect(pinned?.data).toMatchObject({ model: C, sheepId: 'me' });
    const held = await take(jobs, A);
    expect(idOf(held)).toBe('held-model');
    expect(held?.queue).toBe(modelQueueName(A));
    expect(idOf(await take(jobs, A))).toBe('other-model');
    expect(await take(jobs, A, false, 200)).toBeNull();
  });

  it('prefers the held model over a fuller queue of another model', async () => {
    const jobs = source();
    for (let i = 0; i < 3; i++) await add(`b${i}`, B);
    await add('a0', A);
    expect(idOf(await take(jobs, A))).toBe('a0');
    expect(idOf(await take(jobs, A))).toBe('b0');
  });

  it('when idle, prefers a model no other live sheep holds, then the fullest queue', async () => {
    const jobs = source({ otherSheep: ['other', 'gone'] });
    await s.registry.publish('other', { model: B, request: null, heartbeatAt: new Date().toISOString() }, 30_000);
    for (let i = 0; i < 3; i++) await add(`b${i}`, B);
    await add('c0', C);
    await add('a0', A);
    await add('a1', A);

    // A (2 jobs) and C (1) are held by no other sheep; B is, though fullest.
    expect(idOf(await take(jobs))).toBe('a0');
    expect(idOf(await take(jobs))).toBe('a1');
    expect(idOf(await take(jobs))).toBe('c0');
    // Only B is left: an idle sheep still takes it rather than wait.
    expect(idOf(await take(jobs))).toBe('b0');
  });

  it('takes a model from a sheep whose state has expired like any unheld one', async () => {
    const jobs = source();
    await s.registry.publish('other', { model: B, request: null, heartbeatAt: new Date().toISOString() }, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await add('c0', C);
    await add('b0', B);
    await add('b1', B);
    expect(idOf(await take(jobs))).toBe('b0');
  });

  it('when busy, takes only pinned jobs and jobs of the held model', async () => {
    const jobs = source();
    await add('b0', B);
    expect(await take(jobs, A, true, 300)).toBeNull();
    expect(await take(jobs, null, true, 300)).toBeNull();
    await add('pinned', B, 'me');
    await add('a0', A);
    expect(idOf(await take(jobs, A, true))).toBe('pinned');
    expect(idOf(await take(jobs, A, true))).toBe('a0');
    expect(await take(jobs, A, true, 300)).toBeNull();
    // Idle again, it takes the other model's job.
    expect(idOf(await take(jobs, A, false))).toBe('b0');
  });

  it('wakes on a new job without waiting for its poll interval', async () => {
    const jobs = source({ pollIntervalMs: 20_000 });
    const started = Date.now();
    const taking = take(jobs, null, false, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await add('late', C);
    expect(idOf(await taking)).toBe('late');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('returns null when the stop signal aborts, at once when it already has', async () => {
    const jobs = source({ pollIntervalMs: 20_000 });
    const stop = new AbortController();
    const started = Date.now();
    const waiting = jobs.next(() => null, () => false, stop.signal);
    await new Promise((resolve) => setTimeout(resolve, 200));
    stop.abort();
    await expect(waiting).resolves.toBeNull();
    expect(Date.now() - started).toBeLessThan(5_000);

    await add('a0', A);
    await expect(jobs.next(() => null, () => false, stop.signal)).resolves.toBeNull();
  });
});
