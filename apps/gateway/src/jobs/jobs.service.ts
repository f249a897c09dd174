import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import type { ShepherdConfig } from '@shepherd/config';
import { checkJobId, INPUTS_FOLDER, isFinished, type JobStatus, type StartJobRequest } from '@shepherd/contracts';
import { StatusEvents, StatusStore, UploadsInFlight, WaitingJobs } from '@shepherd/queue';
import { JobExistsError, type JobStorage } from '@shepherd/storage';
import { ApiError, badRequest, conflict, notFound, unknownJob } from '../errors/api-errors';
import { mayAccess, OPEN, type Principal } from '../auth/principal';
import { Submitter } from './submit';
import type { Utf8Bytes } from './streamed-json';
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
    private readonly metrics: MetricsService,
    private readonly submitter: Submitter,
    private readonly waiting: WaitingJobs,
    private readonly uploads: UploadsInFlight,
  ) {}

  checkJobId(jobId: string): void {
    const problem = checkJobId(jobId, this.storage.jobIdRule);
    if (problem) throw badRequest(problem);
  }

  /**
   * Validates what the config decides, then submits (see Submitter for the
   * steps). `payload`: the bytes of inputs/input, when the request gave them
   * (`request.payload` is not read).
   */
  async start(request: StartJobRequest, principal: Principal = OPEN, payload?: Utf8Bytes): Promise<void> {
    this.checkJobId(request.job_id);
    if (request.sheep_id && !Object.hasOwn(this.config.sheep, request.sheep_id)) {
      throw notFound(`Sheep \`${request.sheep_id}\` does not exist`);
    }
    const owner = principal.name;
    const limit = owner ? this.config.auth?.tokens.find((token) => token.name === owner)?.maxWaitingJobs : undefined;
    if (owner && limit && !(await this.waiting.below(owner, limit))) {
      throw new ApiError(429, `The token \`${owner}\` has ${limit} jobs waiting already, its limit: retry when some have started`);
    }
    await this.submitter.submit(request, owner, payload);
    this.metrics.jobSubmitted(request.model);
  }

  /** 404 unless `principal` may see the job (its own, or admin); an unknown job is 404 too. */
  async checkAccess(jobId: string, principal: Principal): Promise<void> {
    if (principal.name === null) return;
    await this.status(jobId, principal);
  }

  beforeApplicationShutdown(): void {
    this.closing.abort();
  }

  async status(jobId: string, principal: Principal = OPEN): Promise<JobStatus> {
    const status = await this.statuses.read(jobId);
    // Another token's job answers as an unknown one: its existence is not told.
    if (!status || !mayAccess(principal, status.submitted_by)) throw unknownJob(jobId);
    return status;
  }

  /**
   * Resolves with the status once the job is done or failed, or when
   * `timeoutMs` passes or `signal` aborts, with the status then.
   */
  async waitReady(jobId: string, timeoutMs: number | undefined, signal: AbortSignal, principal: Principal = OPEN): Promise<JobStatus> {
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
      const current = await this.status(jobId, principal);
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
    // Counted before the check, so a start racing this upload sees one or the other.
    await this.uploads.begin(jobId);
    const renew = setInterval(() => void this.uploads.renew(jobId).catch(() => undefined), 10_000);
    try {
      await this.store(jobId, path, body, size);
    } finally {
      clearInterval(renew);
      await this.uploads.end(jobId).catch(() => undefined);
    }
  }

  private async store(jobId: string, path: string, body: Readable, size: number | undefined): Promise<void> {
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
      await this.storage.putFile(jobId, INPUTS_FOLDER, path, body, size);
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
