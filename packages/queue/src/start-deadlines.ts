import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

/**
 * Jobs that must start by a time (queue_timeout). A job no worker takes
 * in time is failed by the gateway's sweeper even when no sheep is alive
 * to notice; a worker also checks the deadline when it takes a job.
 */
export class StartDeadlines {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async add(queue: string, jobId: string, startBy: number): Promise<void> {
    await viaRedis(() => this.redis.zadd(this.keys.startDeadlines, startBy, `${queue}|${jobId}`));
  }

  /** Entries whose time has passed, oldest first. */
  async due(limit = 100): Promise<Array<{ queue: string; jobId: string; entry: string }>> {
    const entries = await viaRedis(() => this.redis.zrangebyscore(this.keys.startDeadlines, '-inf', Date.now(), 'LIMIT', 0, limit));
    return entries.map((entry) => {
      const cut = entry.indexOf('|');
      return { queue: entry.slice(0, cut), jobId: entry.slice(cut + 1), entry };
    });
  }

  async done(entry: string): Promise<void> {
    await viaRedis(() => this.redis.zrem(this.keys.startDeadlines, entry));
  }
}
