import type { Redis } from 'ioredis';
import { modelKey, type Model } from '@shepherd/contracts';
import type { RedisKeys } from './keys';

export interface FinishedCount {
  sheep: string;
  model: string;
  status: 'done' | 'failed';
  count: number;
}

/**
 * Counters the workers push through Redis and the gateway's /metrics reads:
 * one scrape target for the whole deployment, workers on other machines
 * included, and counts that survive a worker restart.
 */
export class MetricsStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  private get finishedKey(): string {
    return `${this.keys.prefix}:metrics:finished`;
  }

  private get loadsKey(): string {
    return `${this.keys.prefix}:metrics:model-loads`;
  }

  /** Fire and forget: a lost increment must never fail a job. */
  jobFinished(sheep: string, model: Model, status: 'done' | 'failed'): void {
    this.redis.hincrby(this.finishedKey, `${sheep}|${modelKey(model)}|${status}`, 1).catch(() => undefined);
  }

  modelLoaded(sheep: string): void {
    this.redis.hincrby(this.loadsKey, sheep, 1).catch(() => undefined);
  }

  async finished(): Promise<FinishedCount[]> {
    const all = await this.redis.hgetall(this.finishedKey);
    return Object.entries(all).map(([field, count]) => {
      const [sheep = '', model = '', status = 'done'] = field.split('|');
      return { sheep, model, status: status as 'done' | 'failed', count: Number(count) };
    });
  }

  async modelLoads(): Promise<Record<string, number>> {
    const all = await this.redis.hgetall(this.loadsKey);
    return Object.fromEntries(Object.entries(all).map(([sheep, count]) => [sheep, Number(count)]));
  }
}
