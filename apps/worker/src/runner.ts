import type { Logger } from 'pino';
import { modelKey, type Model } from '@shepherd/contracts';
import { RunnerClient, type RunnerProgress, type RunnerResult } from '@shepherd/runner';
import { RunnerDiedError, RunnerStartError, RunnerStoppedError, describeExit, type RunnerExit } from './errors';
import type { PreparedRunner, RunnerHost, StartedRunner } from './sheep/runner-host';

interface Live {
  model: Model;
  process: StartedRunner;
  client: RunnerClient;
  /** Job ids handed over and not yet answered, oldest first: the runner works in this order. */
  outstanding: string[];
  died?: RunnerExit;
  /** The job the runner was working on when it died (or when abort() was called). */
  culprit?: string;
  /** Set by abort(): the runner was stopped on purpose. */
  stopReason?: string;
}

/** A start in progress, so abort() can stop it too. */
interface Pending {
  process?: StartedRunner;
  stopReason?: string;
}

/**
 * The sheep's one runner: started for a model, replaced when another model
 * is needed (after the jobs in it are answered), and noticed when it dies.
 */
export class Runner {
  private live?: Live;
  private starting?: Promise<Live>;
  private pending?: Pending;
  /** Runners being stopped: none starts on their port until they are gone. */
  private stopping?: Promise<void>;
  private drainWaiters: (() => void)[] = [];
  /** Runner starts, the first load included. */
  modelLoads = 0;

  constructor(
    private readonly host: RunnerHost,
    /**
     * `onChange` runs when `model` or `currentJob` changes, synchronously, so what it sends goes out before the caller's next step.
     * `onProgress` gets each ProgressMessage of a job in the runner as it arrives (default: none; the runner is not asked for any).
     */
    private readonly options: { startTimeoutMs: number; log: Logger; onChange?: () => void; onProgress?: RunnerProgress },
  ) {}

  get model(): Model | null {
    return this.live && !this.live.died ? this.live.model : null;
  }

  get currentJob(): string | null {
    return this.live?.outstanding[0] ?? null;
  }

  /**
   * Makes sure a runner for `model` is listening. A different model waits
   * for the jobs in the current runner to be answered, then swaps: the new
   * runner is prepared (image pulled, container created) while the old one
   * still runs, so a model that cannot start (a missing image) fails here
   * and leaves the loaded runner in place.
   */
  async ensure(model: Model): Promise<Live> {
    for (;;) {
      if (this.starting) await this.starting.catch(() => undefined);
      if (this.stopping) await this.stopping;
      const live = this.live;
      if (live && !live.died && modelKey(live.model) === modelKey(model)) return live;
      if (live && !live.died && live.outstanding.length > 0) {
        await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        continue;
      }
      if (this.starting || this.stopping) continue;
      this.starting = this.replace(model);
      try {
        return await this.starting;
      } finally {
        this.starting = undefined;
      }
    }
  }

  /** Hands a job to the runner; resolves with its answer, rejects with RunnerDiedError. */
  async submit(live: Live, jobId: string, ioDataRoot: string): Promise<RunnerResult> {
    if (live.died) throw new RunnerDiedError(live.died, false);
    live.outstanding.push(jobId);
    if (live.outstanding.length === 1) this.options.onChange?.();
    try {
      return await live.client.submit(jobId, ioDataRoot);
    } catch (error) {
      if (live.died && live.stopReason !== undefined) {
        // Stopped on purpose: the job it was on fails with the reason; those queued behind it run again, unblamed.
        if (live.culprit === jobId) throw new RunnerStoppedError(live.stopReason, live.died);
        throw new RunnerDiedError(live.died, false);
      }
      if (live.died) throw new RunnerDiedError(live.died, live.culprit === jobId);
      throw error;
    } finally {
      live.outstanding.splice(live.outstanding.indexOf(jobId), 1);
      if (live.outstanding.length === 0) {
        this.options.onChange?.();
        this.wakeDrainWaiters();
      }
    }
  }

  /** Stops the runner for good (shutdown); the jobs in it reject as the client closes. */
  async stop(): Promise<void> {
    const live = this.live;
    this.live = undefined;
    if (!live) return;
    live.client.close();
    await this.track(live.process.stop());
  }

  /**
   * Stops the runner at once, for a cancel or a job timeout: SIGTERM, then
   * SIGKILL after the sheep's `stop_timeout` (docker: stop, then kill).
   * The job it is working on (`currentJob` now) rejects with
   * RunnerStoppedError(reason); jobs queued behind it in the runner reject
   * with RunnerDiedError(culprit false), so the job loop runs them again
   * on a fresh runner without counting an attempt. The next ensure() starts
   * a fresh runner (a model load); none starts until this one is gone.
   *
   * With `jobId`, it acts only if that job is the one in hand, so a job that
   * has just been answered does not take the next one down; it resolves
   * false and stops nothing otherwise. Without `jobId`, a runner still
   * starting is stopped as well, and that ensure() rejects with
   * RunnerStoppedError. Resolves true, once the runner has ended, if it
   * stopped one.
   */
  async abort(reason: string, jobId?: string): Promise<boolean> {
    const live = this.live;
    const pending = this.pending;
    if (live && !live.died && (jobId === undefined || live.outstanding[0] === jobId)) {
      this.live = undefined;
      live.stopReason = reason;
      live.culprit = live.outstanding[0];
      this.options.log.warn({ model: live.model, jobId: live.culprit, reason }, 'stopping the runner');
      this.options.onChange?.();
      await this.track(
        (async () => {
          await live.process.stop();
          await live.process.exited; // its handler rejects the jobs in it before the client closes
          live.client.close();
        })(),
      );
      return true;
    }
    if (jobId !== undefined || !pending || pending.stopReason !== undefined) return false;
    pending.stopReason = reason;
    if (pending.process) await this.track(pending.process.stop());
    await this.starting?.catch(() => undefined);
    return true;
  }

  /** Keeps `stopping` set until every stop in flight has ended. */
  private track(stop: Promise<void>): Promise<void> {
    const all = Promise.all([this.stopping, stop]).then(() => undefined);
    this.stopping = all;
    void all.then(() => {
      if (this.stopping === all) this.stopping = undefined;
    });
    return stop;
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  private async replace(model: Model): Promise<Live> {
    const pending: Pending = {};
    this.pending = pending;
    try {
      return await this.swap(model, pending);
    } finally {
      if (this.pending === pending) this.pending = undefined;
    }
  }

  /** Prepares the next runner, then stops the old one and starts it. */
  private async swap(model: Model, pending: Pending): Promise<Live> {
    const log = this.options.log;
    const started = Date.now();
    const prepared: PreparedRunner = this.host.prepare
      ? await this.host.prepare(model)
      : { start: () => this.host.start(model), discard: async () => undefined };
    const swapStarted = Date.now();
    try {
      if (pending.stopReason !== undefined) throw new RunnerStoppedError(pending.stopReason);
      await this.stop();
      await this.stopping; // an abort() in flight: its runner still holds the port
    } catch (error) {
      await prepared.discard();
      throw error;
    }
    const process = await prepared.start();
    pending.process = process;
    this.modelLoads += 1;
    const client = new RunnerClient({
      host: process.host,
      port: process.port,
      onWarning: (message, details) => log.warn({ model, ...details }, message),
      onProgress: this.options.onProgress,
    });
    const live: Live = { model, process, client, outstanding: [] };
    void process.exited.then((exit) => {
      live.died = exit;
      // Noted before failAll: each rejected submit removes its job from `outstanding`. abort() noted its own.
      if (live.stopReason === undefined) live.culprit = live.outstanding[0];
      log.warn({ model, exit: { code: exit.code, signal: exit.signal } }, 'runner ended');
      client.failAll(new RunnerDiedError(exit));
      this.wakeDrainWaiters();
    });
    try {
      if (pending.stopReason !== undefined) throw new RunnerStoppedError(pending.stopReason);
      client.connect();
      await Promise.race([
        client.waitListening(this.options.startTimeoutMs),
        process.exited.then((exit) => {
          throw new RunnerStartError(`The runner for ${modelKey(model)} ended while starting: ${describeExit(exit)}`, exit);
        }),
      ]);
      if (pending.stopReason !== undefined) throw new RunnerStoppedError(pending.stopReason);
    } catch (error) {
      client.close();
      await process.stop();
      if (pending.stopReason !== undefined) throw new RunnerStoppedError(pending.stopReason, await process.exited);
      if (error instanceof RunnerStartError) throw error;
      throw new RunnerStartError(`The runner for ${modelKey(model)} did not listen on port ${process.port}: ${(error as Error).message}`);
    }
    log.info({ model, ms: Date.now() - started, switchMs: Date.now() - swapStarted }, 'runner listening');
    this.live = live;
    this.options.onChange?.();
    return live;
  }
}

export type LiveRunner = Live;
