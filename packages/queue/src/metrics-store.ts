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

/** How long increments gather in a process before one round trip writes them all. */
export const METRICS_FLUSH_MS = 250;

/**
 * Counters the workers push through Redis and the gateway's /metrics reads:
 * one scrape target for the whole deployment, workers on other machines
 * included, and counts that survive a worker restart. Increments gather in
 * memory and go out together every METRICS_FLUSH_MS (one pipeline instead of
 * a MULTI per job and stage: at a few hundred jobs a second that was a fifth
 * of Redis's commands). A process killed outright loses at most that much;
 * a stopping worker flushes.
 */
export class MetricsStore {
  /** `key` → `field` → increment, waiting for the next flush. */
  private readonly pending = new Map<string, Map<string, number>>();
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

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

  /** Never fails a job: a lost increment is only a metric. */
  jobFinished(sheep: string, model: Model, status: FinishedAs): void {
    this.add(this.finishedKey, `${sheep}|${modelKey(model)}|${status}`, 1);
  }

  modelLoaded(sheep: string): void {
    this.add(this.loadsKey, sheep, 1);
  }

  private get stagesKey(): string {
    return this.keys.stageMetrics;
  }

  /** Records one duration: its bucket, the sum and the count. */
  observe(stage: Stage, sheep: string, seconds: number): void {
    const bucket = DURATION_BUCKETS.find((le) => seconds <= le) ?? Infinity;
    this.add(this.stagesKey, `${stage}|${sheep}|${bucket}`, 1);
    this.add(this.stagesKey, `${stage}|${sheep}|sum`, seconds);
    this.add(this.stagesKey, `${stage}|${sheep}|count`, 1);
  }

  /** Writes what gathered so far; resolves once Redis has it (or could not take it: dropped). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return this.flushing;
    const batch = [...this.pending.entries()];
    this.pending.clear();
    // Stage times before the finished counts: a reader that sees a job counted sees its stages too.
    batch.sort(([a], [b]) => Number(b === this.stagesKey) - Number(a === this.stagesKey));
    // One pipeline per key: on a cluster each key may live on another node.
    const writes = batch.map(([key, fields]) => {
      const pipeline = this.redis.pipeline();
      for (const [field, amount] of fields) {
        if (field.endsWith('|sum')) pipeline.hincrbyfloat(key, field, amount);
        else pipeline.hincrby(key, field, amount);
      }
      return pipeline;
    });
    this.flushing = this.flushing.then(async () => {
      for (const pipeline of writes) await pipeline.exec().catch(() => undefined);
    });
    return this.flushing;
  }

  private add(key: string, field: string, amount: number): void {
    let fields = this.pending.get(key);
    if (!fields) this.pending.set(key, (fields = new Map()));
    fields.set(field, (fields.get(field) ?? 0) + amount);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), METRICS_FLUSH_MS);
      this.timer.unref();
    }
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
