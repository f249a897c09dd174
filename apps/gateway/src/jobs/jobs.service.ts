import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { ShepherdConfig } from '@shepherd/config';
import { checkJobId, isFinished, type JobStatus, type StartJobRequest } from '@shepherd/contracts';
import { JobQueues, StatusEvents, StatusStore } from '@shepherd/queue';
import { JobExistsError, type JobStorage } from '@shepherd/storage';
import { badRequest, conflict, notFound, unknownJob } from '../errors/api-errors';
import { CONFIG, STORAGE } from '../core/tokens';
import { MetricsService } from '../health/metrics.service';

/** The submit path and the reads behind the /jobs routes. */
@Injectable()
export class JobsService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(JobsService.name);
  /** Aborted at shutdown: every waiter answers with the status it has then. */
  private readonly closing = abortWithoutListenerLimit();

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly statuses: StatusStore,
    private readonly events: StatusEvents,
    private readonly queues: JobQueues,
    private readonly metrics: MetricsService,
  ) {}

  checkJobId(jobId: string): void {
    const problem = checkJobId(jobId, this.storage.jobIdRule);
    if (problem) throw badRequest(problem);
  }

  /**
   * Validates, claims the id, creates the job's storage and writes the
   * payload, records `queued`, then queues. A step that fails undoes what
   * this call made, so retrying with the same id is never answered 409.
   */
  async start(request: StartJobRequest): Promise<void> {
    const jobId = request.job_id;
    this.checkJobId(jobId);
    if (request.sheep_id && !this.config.sheep[request.sheep_id]) {
      throw notFound(`Sheep \`${request.sheep_id}\` does not exist`);
    }
    const now = new Date().toISOString();
    const accepted: JobStatus = { status: 'accepted', model: request.model };
    if (!(await this.statuses.claim(jobId, accepted))) throw conflict(`Job \`${jobId}\` already exists`);

    let createdStorage = false;
    try {
      // After a Redis flush the claim succeeds for an old job: storage knows.
      // With a payload, creating the job's storage finds it; without, its status record does.
      if (typeof request.payload !== 'string') {
        const stored = await this.storage.readStatus(jobId);
        if (stored) {
          await this.statuses.write(jobId, stored).catch(() => undefined);
          throw conflict(`Job \`${jobId}\` already exists`);
        }
      }
      if (typeof request.payload === 'string') {
        await this.createJob(jobId);
        createdStorage = true;
        const payload = Buffer.from(request.payload, 'utf8');
        await this.storage.putFile(jobId, 'inputs', 'input', Readable.from([payload]), payload.length);
      } else if (!(await this.storage.jobExists(jobId))) {
        throw notFound(`Data for job \`${jobId}\` does not exist: upload its inputs first or give a payload`);
      }
      await this.statuses.write(jobId, { status: 'queued', model: request.model, enqueued_at: now });
      await this.queues.add({
        jobId,
        model: request.model,
        ...(request.sheep_id ? { sheepId: request.sheep_id } : {}),
        enqueuedAt: now,
      });
      this.metrics.jobSubmitted(request.model);
    } catch (error) {
      await this.undoStart(jobId, createdStorage, error);
      throw error;
    }
  }

  private async createJob(jobId: string): Promise<void> {
    try {
      await this.storage.createJob(jobId);
    } catch (error) {
      if (error instanceof JobExistsError) throw conflict(`Job \`${jobId}\` already exists`);
      throw error;
    }
  }

  private async undoStart(jobId: string, createdStorage: boolean, cause: unknown): Promise<void> {
    const conflictError = (cause as { status?: number }).status === 409;
    if (conflictError) {
      // The id belongs to an existing job: keep its storage; give back only
      // a claim this call made over nothing (the stored status was re-cached).
      return;
    }
    const undo: Promise<unknown>[] = [this.statuses.forget(jobId)];
    if (createdStorage) undo.push(this.storage.deleteJob(jobId));
    else undo.push(this.storage.deleteStatus(jobId));
    const results = await Promise.allSettled(undo);
    for (const result of results) {
      if (result.status === 'rejected') {
        this.logger.warn({ jobId, err: result.reason }, 'could not undo a failed submit; a retry may answer 409');
      }
    }
  }

  beforeApplicationShutdown(): void {
    this.closing.abort();
  }

  async status(jobId: string): Promise<JobStatus> {
    const status = await this.statuses.read(jobId);
    if (!status) throw unknownJob(jobId);
    return status;
  }

  /**
   * Resolves with the status once the job is done or failed, or when
   * `timeoutMs` passes or `signal` aborts, with the status then.
   */
  async waitReady(jobId: string, timeoutMs: number | undefined, signal: AbortSignal): Promise<JobStatus> {
    let wake!: () => void;
    let announced: JobStatus | undefined;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    // Listen before reading, so a change between the two is not missed.
    const stop = this.events.listen(jobId, (status) => {
      if (!isFinished(status)) return;
      announced = status;
      wake();
    });
    const timer = timeoutMs === undefined ? undefined : setTimeout(wake, timeoutMs);
    const onAbort = () => wake();
    signal.addEventListener('abort', onAbort);
    this.closing.signal.addEventListener('abort', onAbort);
    try {
      const current = await this.status(jobId);
      if (isFinished(current)) return current;
      await woken;
      // The event carries the final status: no second read needed.
      return announced ?? (await this.status(jobId));
    } finally {
      stop();
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      this.closing.signal.removeEventListener('abort', onAbort);
    }
  }

  /** Input uploads go to jobs not started yet; creates the job's storage on the first file. */
  async upload(jobId: string, path: string, body: Readable, size: number | undefined): Promise<void> {
    this.checkJobId(jobId);
    const status = await this.statuses.read(jobId);
    if (status) throw conflict(`Job \`${jobId}\` was already started: its inputs can no longer change`);
    let created = false;
    try {
      await this.storage.createJob(jobId);
      created = true;
    } catch (error) {
      if (!(error instanceof JobExistsError)) throw error;
    }
    try {
      await this.storage.putFile(jobId, 'inputs', path, body, size);
    } catch (error) {
      if (created) await this.storage.deleteJob(jobId).catch(() => undefined);
      throw error;
    }
  }
}

/** Every wait_ready listens on this one signal: a thousand waiters are expected, not a leak. */
function abortWithoutListenerLimit(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
