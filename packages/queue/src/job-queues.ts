import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { modelQueueName, queueJobId, sheepQueueName, type JobData } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import { viaRedis } from './redis';

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
    private readonly connection: Redis,
    private readonly keys: RedisKeys,
  ) {}

  queueName(data: JobData): string {
    return data.sheepId ? sheepQueueName(data.sheepId) : modelQueueName(data.model);
  }

  queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection, prefix: this.keys.prefix });
      queue.on('error', () => undefined); // surfaced on the calls themselves
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** Adds the job with its job id as BullMQ's id: adding the same id twice keeps one job. */
  async add(data: JobData): Promise<void> {
    const name = this.queueName(data);
    // Sent before the add on the same connection, so Redis applies it first;
    // not awaited, to save a round trip (if Redis is down the add fails too).
    if (!data.sheepId) this.connection.sadd(this.keys.modelQueues, name).catch(() => undefined);
    await viaRedis(() =>
      this.queue(name).add('job', data, {
        jobId: queueJobId(data.jobId),
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      }),
    );
    // Not awaited: a lost wake-up costs only the sheep's fallback poll interval.
    this.connection.publish(this.keys.workChannel, name).catch(() => undefined);
  }

  /** The queued job of `jobId` on `queueName`, in any state BullMQ keeps (waiting, active, delayed, finished). */
  async find(queueName: string, jobId: string): Promise<Job<JobData> | null> {
    const job = (await viaRedis(() => this.queue(queueName).getJob(queueJobId(jobId)))) as Job<JobData> | undefined;
    return job ?? null;
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
