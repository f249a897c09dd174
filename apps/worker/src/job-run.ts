import type { Logger } from 'pino';
import { withFields } from '@shepherd/logging';
import { isFinished, jobStatus, notStartedError, timedOutError, type ErrorDetails, type JobStatus } from '@shepherd/contracts';
import { priorityBand, type MetricsStore, type StatusStore, type TransitionResult } from '@shepherd/queue';
import type { RunnerResult } from '@shepherd/runner';
import { JobNotFoundError, StorageUnavailableError } from '@shepherd/storage';
import { RunnerDiedError, RunnerStartError, RunnerStoppedError } from './errors';
import type { TakenJob } from './job-source';
import type { Runner } from './runner';
import type { Staging } from './staging';

/** A job this sheep holds, from the take to its settling. */
export interface HeldJob extends TakenJob {
  /** Runs in which the runner died while working on this job. */
  attempts: number;
  /** When the job was first handed to the runner. */
  startedAt?: string;
  /** The `processing` write (null when it failed), awaited before the final status so they stay in order. */
  processingWritten?: Promise<TransitionResult | null>;
  /** Set on shutdown: a job not yet in the runner goes back to the queue. */
  handBack?: boolean;
  /** Set when a cancel arrives: the job is not run, or its runner is stopped; nothing is saved. */
  cancelled?: boolean;
  /** Set when its runner time passed `timeoutMs` and the runner is being stopped. */
  timedOut?: boolean;
  /** Set while the runner works on this job (not while it waits behind another). */
  inRunner?: boolean;
  /** The job's record as this worker last read or wrote it: the next write starts from it without a read. */
  lastRecord?: JobStatus;
}

/** How a run ended; settle.ts records it. */
export type Outcome =
  /** The runner answered and the outputs are in storage. */
  | { kind: 'done' }
  /** `dataGone`: the job's storage no longer exists; its status can live only in Redis. */
  | { kind: 'failed'; details: ErrorDetails; dataGone?: boolean; timedOut?: boolean }
  /** Cancelled by a client: its status says so already; outputs are dropped. */
  | { kind: 'cancelled' }
  /**
   * Back to the queue. `counts`: bounded and delayed (storage away, an
   * outcome that could not be recorded); a shutdown does not count.
   * `atOnce`: no delay (a job left by a killed worker).
   */
  | { kind: 'handBack'; reason: string; counts: boolean; atOnce?: boolean }
  /** The job had finished before (its BullMQ completion was lost): not run again. */
  | { kind: 'alreadyFinal'; status: JobStatus };

export interface JobRunnerOptions {
  sheepId: string;
  runner: Runner;
  staging: Staging;
  statuses: StatusStore;
  metrics: MetricsStore;
  /** Runs of a job whose runner died under it before it fails. */
  maxAttempts: number;
  /** Aborted on shutdown: a job whose runner is stopped goes back to the queue. */
  stopping: AbortSignal;
  log: Logger;
}

const SHUTDOWN: Outcome = { kind: 'handBack', reason: 'the worker is stopping', counts: false };
const CANCELLED: Outcome = { kind: 'cancelled' };

/**
 * Runs one job: stages its inputs while the runner works on earlier jobs,
 * hands it over in the order jobs were taken, runs it again on a fresh
 * runner when the runner dies, uploads its outputs. Expected failures come
 * back as an Outcome, never thrown.
 */
export class JobRunner {
  /** Jobs are handed to the runner in the order they were taken. */
  private dispatchChain: Promise<unknown> = Promise.resolve();
  /** Settles when the runner has answered every job handed to it so far: the next one starts then. */
  private runnerFree: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: JobRunnerOptions) {}

  async run(held: HeldJob): Promise<Outcome> {
    const { jobId, enqueuedAt, startBy, priority } = held.data;
    const { metrics, sheepId, staging, statuses } = this.options;
    const log = withFields(this.options.log, { jobId });
    // Taken too late (its queue timeout passed while no sheep was free): it fails, as the gateway's sweeper would.
    if (startBy && Date.now() > startBy) return failed(notStartedError(held.data));
    const waited = Math.max(0, Date.now() - Date.parse(enqueuedAt)) / 1000;
    metrics.observe('queue_wait', sheepId, waited);
    metrics.observe('queue_wait_by_priority', priorityBand(priority), waited);
    const stagingStarted = performance.now();
    const staged = staging.stageInputs(jobId, held.data.inputs).then(
      () => metrics.observe('input_staging', sheepId, (performance.now() - stagingStarted) / 1000),
      (error: unknown) => error as Error,
    );
    // A job whose BullMQ completion was lost comes back: its status says it finished.
    const before = statuses.read(jobId).catch(() => null);
    const firstTurn = this.dispatchChain.then(() => this.dispatch(held, staged, before, log));
    this.dispatchChain = firstTurn.catch(() => undefined);
    let turn: Outcome | { answer: Promise<RunnerResult> } = await firstTurn;
    for (;;) {
      if ('kind' in turn) return turn;
      const answered = await turn.answer.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      );
      if (held.cancelled) return CANCELLED; // whatever the runner said: nothing is kept
      if ('result' in answered) return this.finish(held, answered.result, log); // in time, even if the timer just fired
      if (held.timedOut && answered.error instanceof RunnerStoppedError) {
        return { kind: 'failed', details: timedOutError(held.data.timeoutMs ?? 0), timedOut: true };
      }
      // A runner stopped for shutdown fails what it holds: those jobs go back.
      if (this.options.stopping.aborted) return SHUTDOWN;
      const error = answered.error;
      if (!(error instanceof RunnerDiedError)) return failed({ message: (error as Error).message, exception_type: (error as Error).name });
      if (error.culprit) held.attempts += 1;
      if (held.attempts >= this.options.maxAttempts) {
        return failed({ message: `${error.message} (after ${held.attempts} attempts)`, exception_type: 'RunnerDied' });
      }
      log.warn({ attempts: held.attempts }, 'runner died; running the job again on a fresh runner');
      // A retry goes straight in: its turn in the order is long past.
      turn = await this.dispatch(held, staged, null, log);
    }
  }

  /** Hands the job to the runner; `before` is its status as read at the take (first run only). */
  private async dispatch(
    held: HeldJob,
    staged: Promise<Error | void>,
    before: Promise<JobStatus | null> | null,
    log: Logger,
  ): Promise<Outcome | { answer: Promise<RunnerResult> }> {
    const { runner, metrics, sheepId, staging } = this.options;
    const { jobId, model } = held.data;
    if (held.handBack) return SHUTDOWN;
    if (held.cancelled) return CANCELLED;
    const stageError = await staged;
    if (stageError) return undispatched(stageError);
    const status = await before;
    if (status && isFinished(status)) return { kind: 'alreadyFinal', status };
    let live;
    try {
      const loads = runner.modelLoads;
      live = await runner.ensure(model);
      if (runner.modelLoads !== loads) metrics.modelLoaded(sheepId);
    } catch (error) {
      // Killed while it started (an OOM kill, a node restart): a runner death like any other, so the job runs again.
      if (error instanceof RunnerStartError && error.exit?.signal) {
        const answer = Promise.reject(new RunnerDiedError(error.exit));
        answer.catch(() => undefined); // handled by the caller's loop
        return { answer };
      }
      return undispatched(error);
    }
    if (held.handBack) return SHUTDOWN;
    if (held.cancelled) return CANCELLED;
    const submitted = performance.now();
    const answer = runner.submit(live, jobId, staging.root);
    void answer.then(() => metrics.observe('runner', sheepId, (performance.now() - submitted) / 1000), () => undefined);
    if (before) held.lastRecord ??= status ?? undefined;
    this.watch(held, answer, log);
    return { answer };
  }

  /**
   * The job's runner time starts when the runner has answered the jobs
   * handed over before it; from then on a cancel or its time limit stops
   * the runner (the jobs behind it run again on a fresh one).
   */
  private watch(held: HeldJob, answer: Promise<RunnerResult>, log: Logger): void {
    const before = this.runnerFree;
    const settled = answer.then(
      () => undefined,
      () => undefined,
    );
    this.runnerFree = Promise.all([before, settled]);
    let timer: NodeJS.Timeout | undefined;
    void before.then(() => {
      if (held.cancelled) return void this.stopFor(held, 'cancelled', log);
      held.inRunner = true;
      if (!held.startedAt) {
        // `processing` from when the runner starts it, not while it waits behind another job;
        // written while the runner already works: off the job's critical path.
        held.startedAt = new Date().toISOString();
        held.processingWritten = this.markProcessing(held, held.lastRecord ?? null, log);
      }
      const limit = held.data.timeoutMs;
      if (limit) {
        timer = setTimeout(() => {
          held.timedOut = true;
          void this.stopFor(held, `timed out after ${limit / 1000} s`, log);
        }, limit);
      }
    });
    void settled.then(() => {
      held.inRunner = false;
      clearTimeout(timer);
    });
  }

  /** Cancels a job this sheep holds: not run if it has not started, else its runner is stopped. */
  cancel(held: HeldJob, log: Logger): void {
    held.cancelled = true;
    if (held.inRunner) void this.stopFor(held, 'cancelled', log);
  }

  private async stopFor(held: HeldJob, reason: string, log: Logger): Promise<void> {
    const started = performance.now();
    const stopped = await this.options.runner.abort(reason, held.data.jobId).catch((error: unknown) => {
      log.warn({ err: error }, 'could not stop the runner');
      return false;
    });
    if (stopped) log.warn({ reason, ms: Math.round(performance.now() - started) }, 'runner stopped for the job');
  }

  /** `current`: the record read at the take, so the write needs no read of its own. */
  private async markProcessing(held: HeldJob, current: JobStatus | null, log: Logger): Promise<TransitionResult | null> {
    const { jobId, model, enqueuedAt } = held.data;
    const record = jobStatus.processing({ model, enqueuedAt, startedAt: held.startedAt, sheepId: this.options.sheepId });
    try {
      // `processing` too: a job taken up again after its worker died. In Redis only (see TransitionOptions.durable).
      const result = await this.options.statuses.transition(jobId, record, { from: ['queued', 'accepted', 'processing'], known: current, durable: false });
      if (result.written) held.lastRecord = result.status;
      if (!result.written) log.warn({ reason: result.reason }, 'processing not recorded');
      return result;
    } catch (error) {
      log.warn({ err: error }, 'could not record processing');
      return null;
    }
  }

  private async finish(held: HeldJob, result: RunnerResult, log: Logger): Promise<Outcome> {
    if (result.kind === 'error') {
      return failed({ message: result.message, exception_type: result.exceptionType, exception_traceback: result.exceptionTraceback });
    }
    // The job finished elsewhere while it ran here (a race with its earlier run): that record stands.
    const processing = await held.processingWritten;
    if (processing && !processing.written && processing.current && isFinished(processing.current)) {
      return { kind: 'alreadyFinal', status: processing.current };
    }
    const { jobId } = held.data;
    try {
      const uploadStarted = performance.now();
      await this.options.staging.uploadOutputs(jobId);
      this.options.metrics.observe('output_upload', this.options.sheepId, (performance.now() - uploadStarted) / 1000);
      return { kind: 'done' };
    } catch (error) {
      log.warn({ err: error }, 'could not save the outputs');
      if (error instanceof StorageUnavailableError || error instanceof JobNotFoundError) return undispatched(error);
      return failed({ message: `Could not save the outputs: ${(error as Error).message}`, exception_type: (error as Error).name });
    }
  }
}

function failed(details: ErrorDetails): Outcome {
  return { kind: 'failed', details };
}

/** The outcome of an error met before (or instead of) the runner's answer. */
function undispatched(error: unknown): Outcome {
  const { message, name } = error as Error;
  if (error instanceof StorageUnavailableError) return { kind: 'handBack', reason: `storage unavailable: ${message}`, counts: true };
  if (error instanceof JobNotFoundError) return { kind: 'failed', details: { message, exception_type: name }, dataGone: true };
  if (error instanceof RunnerStartError) return failed({ message, exception_type: name });
  return failed({ message: `Could not run the job: ${message}`, exception_type: name });
}
