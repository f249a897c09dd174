import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import type { JobStatus } from '@shepherd/contracts';
import { JobQueues, MetricsStore, RedisKeys, SheepRegistry, StatusStore, WorkSignal } from '@shepherd/queue';
import type { RunnerResult } from '@shepherd/runner';
import { StorageUnavailableError, type JobStorage } from '@shepherd/storage';
import { join, resolve } from 'node:path';
import { RunnerDiedError, RunnerStartError } from './errors';
import { JobSource, type TakenJob } from './job-source';
import { Runner, type LiveRunner } from './runner';
import type { RunnerHost } from './sheep/runner-host';
import { Staging } from './staging';

export interface SheepWorkerDeps {
  sheepId: string;
  config: ShepherdConfig;
  storage: JobStorage;
  redis: Redis;
  subscriber: Redis;
  host: RunnerHost;
  log: Logger;
}

interface InHand extends TakenJob {
  attempts: number;
  /** When the job was first handed to the runner. */
  startedAt?: string;
  /** The `processing` status write, awaited before the final status so they stay in order. */
  processingWritten?: Promise<unknown>;
  settled?: Promise<void>;
  /** Set when the job goes back to the queue instead of running (shutdown). */
  handBack?: boolean;
  lockTimer?: NodeJS.Timeout;
}

/**
 * One sheep: takes jobs by affinity, stages inputs while the runner works
 * on earlier jobs, hands each job over as soon as it is staged (the
 * runner's socket queues it), uploads outputs while later jobs run, and
 * records every status change.
 */
export class SheepWorker {
  private readonly keys: RedisKeys;
  private readonly statuses: StatusStore;
  private readonly registry: SheepRegistry;
  private readonly metrics: MetricsStore;
  private readonly signal: WorkSignal;
  private readonly source: JobSource;
  private readonly runner: Runner;
  private readonly staging: Staging;
  private readonly inHand = new Set<InHand>();
  private readonly stopping = new AbortController();
  /** Jobs are handed to the runner in the order they were taken. */
  private dispatchChain: Promise<unknown> = Promise.resolve();
  private heartbeat?: NodeJS.Timeout;
  private loop?: Promise<void>;
  private heldModel: JobStatus['model'] | null = null;
  private capacityWaiter?: () => void;

  constructor(private readonly deps: SheepWorkerDeps) {
    const { config, redis, subscriber, storage, sheepId, log } = deps;
    this.keys = new RedisKeys(config.redis.prefix);
    this.statuses = new StatusStore(redis, storage, this.keys);
    this.registry = new SheepRegistry(redis, this.keys);
    this.metrics = new MetricsStore(redis, this.keys);
    this.signal = new WorkSignal(subscriber, this.keys);
    this.staging = new Staging(storage, join(resolve(config.dataRoot), sheepId));
    // Others see a new model or job in hand at once, not at the next heartbeat.
    this.runner = new Runner(deps.host, { startTimeoutMs: config.worker.startTimeoutMs, log, onChange: () => void this.beat() });
    this.source = new JobSource({
      sheepId,
      connection: redis,
      keys: this.keys,
      queues: new JobQueues(redis, this.keys),
      registry: this.registry,
      signal: this.signal,
      otherSheep: Object.keys(config.sheep).filter((id) => id !== sheepId),
      lockDurationMs: config.worker.lockDurationMs,
      pollIntervalMs: config.worker.pollIntervalMs,
      onStalledFailure: (jobId, reason) => void this.failStalled(jobId, reason),
    });
  }

  get modelLoads(): number {
    return this.runner.modelLoads;
  }

  async start(): Promise<void> {
    await this.staging.reset();
    await this.deps.host.cleanup();
    await this.signal.start();
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), this.deps.config.worker.heartbeatMs);
    this.loop = this.takeJobs();
  }

  /**
   * Stops taking jobs, hands back those not yet in the runner, lets the
   * runner finish what it holds (up to the shutdown grace, then hands those
   * back too), stops the runner and leaves.
   */
  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return this.loop;
    this.stopping.abort();
    this.capacityWaiter?.();
    for (const held of this.inHand) held.handBack = true;
    await this.loop;
    const settled = Promise.all([...this.inHand].map((held) => held.settled));
    const grace = new Promise((resolve) => setTimeout(resolve, this.deps.config.worker.shutdownGraceMs).unref());
    await Promise.race([settled, grace]);
    await Promise.all([...this.inHand].map((held) => this.handBack(held)));
    clearInterval(this.heartbeat);
    await this.runner.stop();
    await this.source.close();
    await this.registry.remove(this.deps.sheepId).catch(() => undefined);
  }

  private async takeJobs(): Promise<void> {
    const limit = this.deps.config.worker.prefetch + 1;
    while (!this.stopping.signal.aborted) {
      if (this.inHand.size >= limit) {
        await new Promise<void>((resolve) => (this.capacityWaiter = resolve));
        continue;
      }
      let taken: TakenJob | null;
      try {
        taken = await this.source.next(
          () => this.heldModel,
          () => this.inHand.size > 0,
          this.stopping.signal,
        );
      } catch (error) {
        this.deps.log.error({ err: error }, 'could not take a job; retrying');
        await new Promise((resolve) => setTimeout(resolve, this.deps.config.worker.pollIntervalMs));
        continue;
      }
      if (!taken) break;
      this.heldModel = taken.data.model;
      const held: InHand = { ...taken, attempts: 0 };
      this.inHand.add(held);
      this.holdLock(held);
      held.settled = this.process(held).finally(() => {
        clearInterval(held.lockTimer);
        this.inHand.delete(held);
        this.capacityWaiter?.();
        this.signal.wakeAll(); // an idle sheep may take any model: look again now
      });
    }
  }

  private async process(held: InHand): Promise<void> {
    const { jobId, model, enqueuedAt } = held.data;
    const log = this.deps.log.child({ jobId });
    const sheepId = this.deps.sheepId;
    this.metrics.observe('queue_wait', sheepId, Math.max(0, Date.now() - Date.parse(enqueuedAt)) / 1000);
    const stagingStarted = performance.now();
    const staged = this.staging.stageInputs(jobId).then(
      () => this.metrics.observe('input_staging', sheepId, (performance.now() - stagingStarted) / 1000),
      (error: unknown) => error as Error,
    );
    let first = true;
    for (;;) {
      let answer: Promise<RunnerResult>;
      try {
        const dispatch = async () => {
          if (held.handBack) throw new HandBack();
          const stageError = await staged;
          if (stageError) throw stageError;
          const loads = this.runner.modelLoads;
          const live: LiveRunner = await this.runner.ensure(model);
          if (this.runner.modelLoads !== loads) this.metrics.modelLoaded(this.deps.sheepId);
          if (held.handBack) throw new HandBack();
          const submitted = performance.now();
          const answer = this.runner.submit(live, jobId, this.staging.root);
          void answer.then(() => this.metrics.observe('runner', sheepId, (performance.now() - submitted) / 1000), () => undefined);
          if (first) {
            // Written while the runner already works: off the job's critical path.
            held.startedAt = new Date().toISOString();
            const processing = { status: 'processing' as const, model, enqueued_at: enqueuedAt, processing_started_at: held.startedAt };
            held.processingWritten = this.statuses.write(jobId, processing).catch((error: unknown) => log.warn({ err: error }, 'could not record processing'));
          }
          return { answer };
        };
        // First runs keep the order jobs were taken in; a retry goes straight in.
        const turn = first ? this.dispatchChain.then(dispatch) : dispatch();
        if (first) this.dispatchChain = turn.catch(() => undefined);
        answer = (await turn).answer;
      } catch (error) {
        return this.settleUndispatched(held, error, log);
      }
      first = false;
      try {
        return await this.finish(held, await answer, log);
      } catch (error) {
        if (!(error instanceof RunnerDiedError)) return this.fail(held, { message: (error as Error).message }, log);
        if (error.culprit) held.attempts += 1;
        if (held.attempts >= this.deps.config.worker.maxAttempts) {
          return this.fail(held, { message: `${error.message} (after ${held.attempts} attempts)`, exception_type: 'RunnerDied' }, log);
        }
        if (this.stopping.signal.aborted) return this.handBack(held);
        log.warn({ attempts: held.attempts }, 'runner died; running the job again on a fresh runner');
      }
    }
  }

  private async settleUndispatched(held: InHand, error: unknown, log: import('pino').Logger): Promise<void> {
    if (error instanceof HandBack) return this.handBack(held);
    if (error instanceof StorageUnavailableError) {
      log.warn({ err: error }, 'storage unavailable; the job goes back to the queue');
      await new Promise((resolve) => setTimeout(resolve, this.deps.config.worker.pollIntervalMs));
      return this.handBack(held);
    }
    const message = error instanceof RunnerStartError ? error.message : `Could not run the job: ${(error as Error).message}`;
    return this.fail(held, { message, exception_type: (error as Error).name }, log);
  }

  private async finish(held: InHand, result: RunnerResult, log: import('pino').Logger): Promise<void> {
    if (result.kind === 'error') {
      return this.fail(held, { message: result.message, exception_type: result.exceptionType, exception_traceback: result.exceptionTraceback }, log);
    }
    const { jobId, model } = held.data;
    try {
      const uploadStarted = performance.now();
      await this.staging.uploadOutputs(jobId);
      this.metrics.observe('output_upload', this.deps.sheepId, (performance.now() - uploadStarted) / 1000);
      await held.processingWritten;
      await this.statuses.write(jobId, this.ended(held, 'done'));
      await held.job.moveToCompleted({ done: true }, held.token, false);
      this.metrics.jobFinished(this.deps.sheepId, model, 'done');
      log.info('job done');
    } catch (error) {
      if (!(error instanceof StorageUnavailableError)) throw error;
      log.warn({ err: error }, 'storage unavailable while saving the outputs; the job goes back to the queue');
      await this.handBack(held);
    } finally {
      await this.staging.remove(jobId);
    }
  }

  private async fail(held: InHand, details: NonNullable<JobStatus['error_details']>, log: import('pino').Logger): Promise<void> {
    const { jobId, model } = held.data;
    log.warn({ error: details.message }, 'job failed');
    try {
      await held.processingWritten;
      await this.statuses.write(jobId, this.ended(held, 'failed', details));
      await held.job.moveToFailed(new Error(details.message), held.token, false);
      this.metrics.jobFinished(this.deps.sheepId, model, 'failed');
    } catch (error) {
      log.error({ err: error }, 'could not record the failure; the job goes back to the queue');
      await this.handBack(held);
    } finally {
      await this.staging.remove(jobId);
    }
  }

  /** Returns a job to its queue untouched, for another sheep or a later run. */
  private async handBack(held: InHand): Promise<void> {
    const { jobId, model, enqueuedAt } = held.data;
    clearInterval(held.lockTimer);
    await held.processingWritten;
    await this.statuses.write(jobId, { status: 'queued', model, enqueued_at: enqueuedAt }).catch(() => undefined);
    await held.job.moveToWait(held.token).catch((error: unknown) => {
      this.deps.log.warn({ jobId, err: error }, 'could not hand the job back; it returns when its lock lapses');
    });
    await this.staging.remove(jobId).catch(() => undefined);
  }

  private ended(held: InHand, status: 'done' | 'failed', errorDetails?: JobStatus['error_details']): JobStatus {
    const { model, enqueuedAt } = held.data;
    const times = { enqueued_at: enqueuedAt, processing_started_at: held.startedAt ?? null, finished_at: new Date().toISOString() };
    return errorDetails ? { status, model, ...times, error_details: errorDetails } : { status, model, ...times };
  }

  private holdLock(held: InHand): void {
    const duration = this.deps.config.worker.lockDurationMs;
    held.lockTimer = setInterval(() => {
      held.job.extendLock(held.token, duration).catch(() => undefined);
    }, Math.max(200, Math.floor(duration / 3)));
  }

  /** BullMQ gave up on a job whose workers kept dying: its status says so. */
  private async failStalled(jobId: string, reason: string): Promise<void> {
    const status = await this.statuses.read(jobId).catch(() => null);
    if (!status || status.status === 'done' || status.status === 'failed') return;
    await this.statuses
      .write(jobId, { ...status, status: 'failed', finished_at: new Date().toISOString(), error_details: { message: `The job was interrupted too often: ${reason}` } })
      .catch(() => undefined);
  }

  private async beat(): Promise<void> {
    const { sheepId, config } = this.deps;
    await this.registry
      .publish(
        sheepId,
        {
          model: this.runner.model,
          request: this.runner.currentJob,
          heartbeatAt: new Date().toISOString(),
          modelLoads: this.runner.modelLoads,
        },
        config.worker.heartbeatMs * 3,
      )
      .catch((error: unknown) => this.deps.log.warn({ err: error }, 'heartbeat failed'));
  }
}

/** The job goes back to the queue instead of running. */
class HandBack extends Error {}
