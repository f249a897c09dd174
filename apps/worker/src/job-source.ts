import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { MODEL_QUEUE_PREFIX, JobDataSchema, modelQueueName, sheepQueueName, type JobData, type Model } from '@shepherd/contracts';
import type { JobQueues, RedisKeys, SheepRegistry, WorkSignal } from '@shepherd/queue';

/** A job this sheep took from BullMQ, locked by `token` until it is settled. */
export interface TakenJob {
  job: Job<JobData>;
  data: JobData;
  token: string;
  queue: string;
}

export interface JobSourceOptions {
  sheepId: string;
  connection: Redis;
  keys: RedisKeys;
  queues: JobQueues;
  registry: SheepRegistry;
  signal: WorkSignal;
  otherSheep: string[];
  lockDurationMs: number;
  pollIntervalMs: number;
  onStalledFailure: (jobId: string, reason: string) => void;
}

/**
 * Picks the sheep's next job. Order of preference:
 * 1. its own queue (jobs pinned to it with `sheep_id`);
 * 2. the queue of the model it holds: no swap needed;
 * 3. queues of models no other live sheep holds, fullest first: spreads
 *    models over sheep so each keeps its own;
 * 4. any other model queue, fullest first: a sheep is never idle while a
 *    job waits.
 * A busy sheep (jobs in hand) prefetches only from 1 and 2: a job of another
 * model is left to an idle sheep instead of forcing a swap here.
 * It waits on the wake-up channel (and a fallback poll) only when every
 * queue it may take from is empty.
 */
export class JobSource {
  private readonly workers = new Map<string, Worker<JobData>>();

  constructor(private readonly options: JobSourceOptions) {}

  async next(heldModel: () => Model | null, busy: () => boolean, stop: AbortSignal): Promise<TakenJob | null> {
    while (!stop.aborted) {
      const taken = await this.tryTake(heldModel(), busy());
      if (taken) return taken;
      await this.options.signal.wait(this.options.pollIntervalMs, stop);
    }
    return null;
  }

  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((worker) => worker.close(true)));
  }

  private async tryTake(heldModel: Model | null, busy: boolean): Promise<TakenJob | null> {
    const held = heldModel ? modelQueueName(heldModel) : undefined;
    // The cheap, usual case first: a pinned job or one of the model in hand.
    const first = await this.takeFrom([sheepQueueName(this.options.sheepId), ...(held ? [held] : [])]);
    if (first || busy) return first;
    return this.takeFrom(await this.otherQueues(heldModel));
  }

  private async takeFrom(names: string[]): Promise<TakenJob | null> {
    for (const name of names) {
      const token = `${this.options.sheepId}:${randomUUID()}`;
      const job = (await this.worker(name).getNextJob(token, { block: false })) as Job<JobData> | undefined;
      if (job) return { job, data: JobDataSchema.parse(job.data), token, queue: name };
    }
    return null;
  }

  /** Model queues other than the held one that have jobs: unheld models first, then fullest first. */
  private async otherQueues(heldModel: Model | null): Promise<string[]> {
    const { queues, registry, otherSheep } = this.options;
    const held = heldModel ? modelQueueName(heldModel) : undefined;
    const names = (await queues.modelQueueNames()).filter((name) => name !== held);
    const [counts, others] = await Promise.all([
      Promise.all(names.map((name) => queues.queue(name).getWaitingCount())),
      registry.read(otherSheep),
    ]);
    const heldByOthers = new Set(
      [...others.values()].flatMap((state) => (state?.model ? [modelQueueName(state.model)] : [])),
    );
    const rest = names
      .map((name, index) => ({ name, count: counts[index] ?? 0, taken: heldByOthers.has(name) }))
      .filter((queue) => queue.count > 0 && queue.name.startsWith(MODEL_QUEUE_PREFIX))
      .sort((a, b) => Number(a.taken) - Number(b.taken) || b.count - a.count)
      .map((queue) => queue.name);
    return rest;
  }

  /** A BullMQ worker in manual mode per queue; it also runs that queue's stalled-job check. */
  private worker(name: string): Worker<JobData> {
    let worker = this.workers.get(name);
    if (!worker) {
      worker = new Worker<JobData>(name, null, {
        connection: this.options.connection,
        prefix: this.options.keys.prefix,
        autorun: false,
        lockDuration: this.options.lockDurationMs,
        stalledInterval: Math.max(1000, Math.floor(this.options.lockDurationMs / 2)),
        maxStalledCount: 3,
      });
      worker.on('error', () => undefined); // Redis outages surface on the calls
      worker.on('failed', (job, error) => {
        // Only the stalled checker fails jobs here: this sheep settles its own jobs itself.
        if (job && error?.message.includes('stalled')) this.options.onStalledFailure(job.data.jobId, error.message);
      });
      void worker.startStalledCheckTimer().catch(() => undefined);
      this.workers.set(name, worker);
    }
    return worker;
  }
}

