import { Job } from 'bullmq';
import { withFields } from '@shepherd/logging';
import type { Logger } from 'pino';
import { JobDataSchema, queueJobId, type JobData } from '@shepherd/contracts';
import type { JobQueues, RedisClient, RedisKeys } from '@shepherd/queue';
import type { Settler } from './settle';

export interface HeldJobsOptions {
  sheepId: string;
  redis: RedisClient;
  keys: RedisKeys;
  queues: JobQueues;
  lockDurationMs: number;
  log: Logger;
}

/**
 * The jobs this sheep holds, in Redis (`sheepJobs`: job id -> `queue|token`),
 * so that the sheep's next worker returns at once what a killed one held,
 * instead of waiting for their locks to lapse.
 */
export class HeldJobs {
  constructor(private readonly options: HeldJobsOptions) {}

  private get key(): string {
    return this.options.keys.sheepJobs(this.options.sheepId);
  }

  /** Not awaited: sent on the same connection as the later release, so Redis applies them in order. */
  hold(jobId: string, queue: string, token: string): void {
    this.options.redis.hset(this.key, jobId, `${queue}|${token}`).catch((error: unknown) => {
      this.options.log.warn({ err: error, jobId }, 'could not note the job as held; if this worker dies it returns when its lock lapses');
    });
  }

  async release(jobId: string): Promise<void> {
    await this.options.redis.hdel(this.key, jobId).catch(() => undefined);
  }

  /**
   * Returns the jobs a previous worker of this sheep left in hand: each goes
   * back to wait at once with the old token (counted, so a job that kills its
   * worker every time still ends), its status back to `queued`. A job that
   * finished or moved on meanwhile is left alone.
   */
  async returnLeftovers(settler: Settler): Promise<number> {
    const left = await this.options.redis.hgetall(this.key);
    let returned = 0;
    for (const [jobId, value] of Object.entries(left)) {
      const log = withFields(this.options.log, { jobId });
      const split = value.lastIndexOf('|');
      const queue = value.slice(0, split);
      const token = value.slice(split + 1);
      try {
        const job = (await Job.fromId(this.options.queues.queue(queue), queueJobId(jobId))) as Job<JobData> | undefined;
        const data = JobDataSchema.safeParse(job?.data);
        // Still ours only while the old token holds its lock; extending it keeps others off until it is back.
        if (!job || !data.success || (await job.extendLock(token, this.options.lockDurationMs)) !== 1) {
          log.debug({ queue }, 'a job left by the previous worker had moved on');
        } else {
          const settled = await settler.settle(
            { job, data: data.data, token, queue, attempts: 0 },
            { kind: 'handBack', reason: 'its worker was killed', counts: true, atOnce: true },
          );
          if (settled.movedTo) returned += 1;
        }
      } catch (error) {
        log.debug({ err: error, queue }, 'could not return a job left by the previous worker');
      }
      await this.release(jobId);
    }
    if (returned > 0) this.options.log.info({ returned }, 'returned the jobs the previous worker held');
    return returned;
  }
}
