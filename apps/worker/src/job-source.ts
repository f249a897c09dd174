import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import {
  MODEL_QUEUE_PREFIX,
  JobDataSchema,
  ModelSchema,
  checkJobId,
  describeZodError,
  modelQueueName,
  sheepQueueName,
  type JobData,
  type JobIdRule,
  type Model,
} from '@shepherd/contracts';
import type { JobQueues, RedisClient, RedisKeys, SheepRegistry, WorkSignal } from '@shepherd/queue';

/** A job this sheep took from BullMQ, locked by `token` until it is settled. */
export interface TakenJob {
  job: Job<JobData>;
  data: JobData;
  token: string;
  queue: string;
}

/** A job taken whose data or id is not what the contracts allow: it must fail without running. */
export interface RejectedJob {
  job: Job;
  token: string;
  queue: string;
  /** What is wrong, for the user. */
  reason: string;
  /** The job id when it is a valid one (its status may be written), else null. */
  jobId: string | null;
  /** The model when it parses, for the status record. */
  model: Model | null;
}

export interface JobSourceOptions {
  sheepId: string;
  connection: RedisClient;
  keys: RedisKeys;
  queues: JobQueues;
  registry: SheepRegistry;
  signal: WorkSignal;
  otherSheep: string[];
  lockDurationMs: number;
  pollIntervalMs: number;
  onStalledFailure: (jobId: string, reason: string) => void;
  /** The storage's job id rule; without it only the data's shape is checked. */
  jobIdRule?: JobIdRule;
  /**
   * Settles a job that failed validation; it is never returned by `next`.
   * Default: fails it in BullMQ for good (UnrecoverableError).
   */
  onInvalid?: (rejected: RejectedJob) => Promise<void>;
  /** Takes only its own queue and this model's (an external sheep's one runner). Default: any model. */
  onlyModel?: Model;
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
  /** When the sheep's own queue was last found empty; 0: look. */
  private ownQueueEmptyAt = 0;

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
    const only = this.options.onlyModel;
    const own = this.ownQueue();
    if (only) return this.takeFrom([...own, modelQueueName(only)]);
    const held = heldModel ? modelQueueName(heldModel) : undefined;
    // The cheap, usual case first: a pinned job or one of the model in hand.
    const first = await this.takeFrom([...own, ...(held ? [held] : [])]);
    if (first || busy) return first;
    return this.takeFrom(await this.otherQueues(heldModel));
  }

  /**
   * The sheep's own queue, unless it was found empty and nothing was added
   * to it since (pinned jobs are rare: a take per job saved). A wake-up lost
   * on the way is covered by looking again every poll interval.
   */
  private ownQueue(): string[] {
    const name = sheepQueueName(this.options.sheepId);
    const since = this.ownQueueEmptyAt;
    if (since > 0 && this.options.signal.wokenAt(name) < since && Date.now() - since < this.options.pollIntervalMs) return [];
    return [name];
  }

  private async takeFrom(names: string[]): Promise<TakenJob | null> {
    const own = sheepQueueName(this.options.sheepId);
    for (const name of names) {
      // An invalid job is settled here and the same queue is asked again.
      for (;;) {
        const token = `${this.options.sheepId}:${randomUUID()}`;
        const asked = Date.now();
        const job = (await this.worker(name).getNextJob(token, { block: false })) as Job | undefined;
        if (name === own) this.ownQueueEmptyAt = job ? 0 : asked;
        if (!job) break;
        const checked = this.check(job, token, name);
        if ('data' in checked) return checked;
        await this.reject(checked);
      }
    }
    return null;
  }

  /** The edge of the worker: what came through Redis is parsed, and the id must be a safe storage name. */
  private check(job: Job, token: string, queue: string): TakenJob | RejectedJob {
    const raw: unknown = job.data;
    const fields = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
    const rawId = typeof fields.jobId === 'string' ? fields.jobId : null;
    const rule = this.options.jobIdRule;
    const idProblem = rawId !== null && rule ? checkJobId(rawId, rule) : null;
    const jobId = rawId !== null && !idProblem ? rawId : null;
    const model = ModelSchema.safeParse(fields.model).data ?? null;
    const parsed = JobDataSchema.safeParse(raw);
    if (idProblem) return { job, token, queue, reason: idProblem, jobId, model };
    if (!parsed.success) {
      return { job, token, queue, reason: `Invalid job data: ${describeZodError(parsed.error)}`, jobId, model };
    }
    return { job: job as Job<JobData>, data: parsed.data, token, queue };
  }

  private async reject(rejected: RejectedJob): Promise<void> {
    if (this.options.onInvalid) return this.options.onInvalid(rejected);
    await rejected.job.moveToFailed(new UnrecoverableError(rejected.reason), rejected.token, false).catch(() => undefined);
  }

  /** Model queues other than the held one that have jobs: unheld models first, then fullest first. */
  private async otherQueues(heldModel: Model | null): Promise<string[]> {
    const { queues, registry, otherSheep } = this.options;
    const held = heldModel ? modelQueueName(heldModel) : undefined;
    const names = (await queues.modelQueueNames()).filter((name) => name !== held);
    const [counts, others] = await Promise.all([
      Promise.all(names.map((name) => queues.waitingCount(name))),
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
      worker = new Worker<JobData>(this.options.keys.bullName(name), null, {
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
        const jobId: unknown = job?.data?.jobId;
        if (typeof jobId === 'string' && error?.message.includes('stalled')) this.options.onStalledFailure(jobId, error.message);
      });
      void worker.startStalledCheckTimer().catch(() => undefined);
      this.workers.set(name, worker);
    }
    return worker;
  }
}

