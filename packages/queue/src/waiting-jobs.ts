import { JobStatusSchema } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

/**
 * The jobs of each API token that wait (accepted or queued), for the
 * per-token limit. Entries are added at the claim and removed when the job
 * runs or ends; one lost removal (a crash) is pruned the next time the
 * token is at its limit, by reading the statuses of its entries.
 */
export class WaitingJobs {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async add(owner: string, jobId: string): Promise<void> {
    await viaRedis(() => this.redis.zadd(this.keys.waitingJobs(owner), Date.now(), jobId));
  }

  async remove(owner: string, jobId: string): Promise<void> {
    await viaRedis(() => this.redis.zrem(this.keys.waitingJobs(owner), jobId));
  }

  /** True when `owner` has fewer than `limit` jobs waiting. */
  async below(owner: string, limit: number): Promise<boolean> {
    const key = this.keys.waitingJobs(owner);
    if ((await viaRedis(() => this.redis.zcard(key))) < limit) return true;
    const ids = await viaRedis(() => this.redis.zrange(key, '0', '-1'));
    // One GET per job (their keys lie in other slots on a cluster); autopipelined.
    const records = await viaRedis(() => Promise.all(ids.map((id) => this.redis.get(this.keys.status(id)))));
    const gone = ids.filter((_, index) => !stillWaiting(records[index] ?? null));
    if (gone.length) await viaRedis(() => this.redis.zrem(key, ...gone));
    return ids.length - gone.length < limit;
  }
}

function stillWaiting(record: string | null): boolean {
  if (record === null) return false;
  try {
    const status = JobStatusSchema.parse(JSON.parse(record)).status;
    return status === 'accepted' || status === 'queued';
  } catch {
    return false;
  }
}
