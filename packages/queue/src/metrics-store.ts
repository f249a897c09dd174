import { modelKey, type Model } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import type { RedisClient } from './redis';

/** Upper bounds (seconds) of the histogram buckets the workers fill. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

/** The stages of a job the workers time. */
export type Stage = 'queue_wait' | 'input_staging' | 'runner' | 'output_upload' | 'queue_wait_by_priority';

/** The label of a priority in the queue-wait histogram by priority. */
export function priorityBand(priority: number | undefined): 'high' | 'normal' | 'low' {
  if (!priority) return 'normal';
  return priority > 0 ? 'high' : 'low';
}

export interface StageHistogram {
  stage: Stage;
  sheep: string;
  /** Cumulative counts per bucket bound, as Prometheus wants them. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

export type FinishedAs = 'done' | 'failed' | 'cancelled' | 'timed_out';

export interface FinishedCount {
  sheep: string;
  model: string;
  status: FinishedAs;
  count: number;
}

/**
 * Counters the workers push through Redis and the gateway's /metrics reads:
 * one scrape target for the whole deployment, workers on other machines
 * included, and counts that survive a worker restart.
 */
export class MetricsStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  private get finishedKey(): string {
    return this.keys.finishedMetrics;
  }

  private get loadsKey(): string {
    return this.keys.modelLoadMetrics;
  }

  /** Fire and forget: a lost increment must never fail a job. */
  jobFinished(sheep: string, model: Model, status: FinishedAs): void {
    this.redis.hincrby(this.finishedKey, `${sheep}|${modelKey(model)}|${status}`, 1).catch(() => undefined);
  }

  modelLoaded(sheep: string): void {
    this.redis.hincrby(this.loadsKey, sheep, 1).catch(() => undefined);
  }

  private get stagesKey(): string {
    return this.keys.stageMetrics;
  }

  /** Records one duration: its bucket, the sum and the count, in one round trip, not awaited. */
  observe(stage: Stage, sheep: string, seconds: number): void {
    const bucket = DURATION_BUCKETS.find((le) => seconds <= le) ?? Infinity;
    this.redis
      .multi()
      .hincrby(this.stagesKey, `${stage}|${sheep}|${bucket}`, 1)
      .hincrbyfloat(this.stagesKey, `${stage}|${sheep}|sum`, seconds)
      .hincrby(this.stagesKey, `${stage}|${sheep}|count`, 1)
      .exec()
      .catch(() => undefined);
  }

  async stages(): Promise<StageHistogram[]> {
    const all = await this.redis.hgetall(this.stagesKey);
    const byKey = new Map<string, StageHistogram>();
    const perBucket = new Map<string, Map<number, number>>();
    for (const [field, value] of Object.entries(all)) {
      const [stage = '', sheep = '', part = ''] = field.split('|');
      const key = `${stage}|${sheep}`;
      let histogram = byKey.get(key);
      if (!histogram) byKey.set(key, (histogram = { stage: stage as Stage, sheep, buckets: [], sum: 0, count: 0 }));
      if (part === 'sum') histogram.sum = Number(value);
      else if (part === 'count') histogram.count = Number(value);
      else {
        const counts = perBucket.get(key) ?? new Map<number, number>();
        counts.set(Number(part), Number(value));
        perBucket.set(key, counts);
      }
    }
    for (const [key, histogram] of byKey) {
      const counts = perBucket.get(key) ?? new Map<number, number>();
      let running = 0;
      histogram.buckets = [...DURATION_BUCKETS, Infinity].map((le) => ({ le, count: (running += counts.get(le) ?? 0) }));
    }
    return [...byKey.values()];
  }

  async finished(): Promise<FinishedCount[]> {
    const all = await this.redis.hgetall(this.finishedKey);
    return Object.entries(all).map(([field, count]) => {
      const [sheep = '', model = '', status = 'done'] = field.split('|');
      return { sheep, model, status: status as FinishedAs, count: Number(count) };
    });
  }

  async modelLoads(): Promise<Record<string, number>> {
    const all = await this.redis.hgetall(this.loadsKey);
    return Object.fromEntries(Object.entries(all).map(([sheep, count]) => [sheep, Number(count)]));
  }
}
