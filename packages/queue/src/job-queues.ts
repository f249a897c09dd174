import { Queue, type Job } from 'bullmq';
import { bullPriority, modelQueueName, queueJobId, sheepQueueName, type JobData } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import { RedisUnavailableError, viaRedis, whenReady, type RedisClient } from './redis';

/** How long a call waits for a connection that is not ready yet. */
const READY_WAIT_MS = 2000;

/** Queue objects kept open per process; the least recently used is closed past this (it reopens on use). */
const MAX_OPEN_QUEUES = 256;

/** Finished jobs BullMQ keeps for inspection (Bull Board); the status record is the lasting one. */
const KEEP_COMPLETED = { age: 24 * 3600, count: 10_000 };
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 10_000 };

/**
 * The producer side: puts a job on its sheep's queue (pinned) or its
 * model's queue, and records every model queue in a set so workers and Bull
 * Board can find queues created while running.
 */
export class JobQueues {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly connection: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  queueName(data: JobData): string {
    return data.sheepId ? sheepQueueName(data.sheepId) : modelQueueName(data.model);
  }

  /** The BullMQ queue of a logical queue name (hash-tagged on a cluster: see RedisKeys.bullName). */
  queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (queue) {
      // Most recently used last: the map's order is the eviction order.
      this.queues.delete(name);
      this.queues.set(name, queue);
    } else {
      // Model names come from clients: keep a bounded number of queue objects, not one per name ever seen.
      if (this.queues.size >= MAX_OPEN_QUEUES) {
        const [oldest, evicted] = this.queues.entries().next().value as [string, Queue];
        this.evict(oldest, evicted);
      }
      const created = new Queue(this.keys.bullName(name), { connection: this.connection, prefix: this.keys.prefix });
      created.on('error', () => undefined); // surfaced on the calls themselves
      // BullMQ keeps a failed first setup (Redis was down) for good: forget
      // such a queue, so the next call builds a fresh one.
      created.waitUntilReady().catch(() => this.evict(name, created));
      this.queues.set(name, (queue = created));
    }
    return queue;
  }

  private evict(name: string, queue: Queue): void {
    if (this.queues.get(name) !== queue) return;
    this.queues.delete(name);
    queue.close().catch(() => undefined);
  }

  /**
   * A call on a queue that answers 503 at once while Redis is away (a
   * producer must not hang on a reconnect) and drops the queue if it broke.
   */
  private async onQueue<T>(name: string, call: (queue: Queue) => Promise<T>): Promise<T> {
    // A connection still (re)connecting gets a moment; a producer must not hang on one that stays away.
    if (this.connection.status !== 'ready' && !(await whenReady(this.connection, READY_WAIT_MS))) {
      throw new RedisUnavailableError(`Redis is unreachable (connection ${this.connection.status})`);
    }
    const queue = this.queue(name);
    try {
      return await viaRedis(() => call(queue));
    } catch (error) {
      if (error instanceof RedisUnavailableError) this.evict(name, queue);
      throw error;
    }
  }

  /** Adds the job with its job id as BullMQ's id: adding the same id twice keeps one job. */
  async add(data: JobData): Promise<void> {
    const name = this.queueName(data);
    await this.onQueue(name, (queue) => {
      // Sent once the connection is ready and before the add on the same
      // connection, so Redis applies it first: a job on a queue no sheep
      // knows of would wait for ever. Not awaited, to save a round trip (if
      // the connection drops now, the add fails too and the client retries).
      if (!data.sheepId) this.connection.sadd(this.keys.modelQueues, name).catch(() => undefined);
      return queue.add('job', data, {
        jobId: queueJobId(data.jobId),
        priority: bullPriority(data.priority),
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      });
    });
    // Not awaited: a lost wake-up costs only the sheep's fallback poll interval.
    this.connection.publish(this.keys.workChannel, name).catch(() => undefined);
  }

  /** The queued job of `jobId` on `queueName`, in any state BullMQ keeps (waiting, active, delayed, finished). */
  async find(queueName: string, jobId: string): Promise<Job<JobData> | null> {
    const job = (await this.onQueue(queueName, (queue) => queue.getJob(queueJobId(jobId)))) as Job<JobData> | undefined;
    return job ?? null;
  }

  /** Jobs waiting on a queue: every job carries a priority, so they wait in BullMQ's prioritized set. */
  async waitingCount(name: string): Promise<number> {
    return viaRedis(() => this.queue(name).getJobCountByTypes('wait', 'prioritized'));
  }

  /**
   * Takes a job off its queue before any worker has it. False when a
   * worker holds it (BullMQ refuses to remove a locked job) or it is gone.
   */
  async removeWaiting(queueName: string, jobId: string): Promise<boolean> {
    const job = await this.find(queueName, jobId);
    if (!job) return false;
    const state = await viaRedis(() => job.getState());
    if (state !== 'waiting' && state !== 'prioritized' && state !== 'delayed') return false;
    try {
      await viaRedis(() => job.remove());
      return true;
    } catch (error) {
      if (error instanceof RedisUnavailableError) throw error;
      return false; // taken meanwhile: locked
    }
  }

  /** Removes a finished job's entry (retention, delete); a running one is left alone. */
  async removeFinished(queueName: string, jobId: string): Promise<void> {
    const job = await this.find(queueName, jobId);
    if (!job) return;
    await viaRedis(() => job.remove()).catch((error: unknown) => {
      if (error instanceof RedisUnavailableError) throw error;
    });
  }

  /** Every model queue ever used, sorted. */
  async modelQueueNames(): Promise<string[]> {
    const names = await viaRedis(() => this.connection.smembers(this.keys.modelQueues));
    return names.sort();
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
    this.queues.clear();
  }
}
