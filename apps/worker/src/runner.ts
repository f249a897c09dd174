import type { Logger } from 'pino';
import { modelKey, type Model } from '@shepherd/contracts';
import { RunnerClient, type RunnerResult } from '@shepherd/runner';
import { RunnerDiedError, RunnerStartError, describeExit, type RunnerExit } from './errors';
import type { RunnerHost, StartedRunner } from './sheep/runner-host';

interface Live {
  model: Model;
  process: StartedRunner;
  client: RunnerClient;
  /** Job ids handed over and not yet answered, oldest first: the runner works in this order. */
  outstanding: string[];
  died?: RunnerExit;
  /** The job the runner was working on when it died. */
  culprit?: string;
}

/**
 * The sheep's one runner: started for a model, replaced when another model
 * is needed (after the jobs in it are answered), and noticed when it dies.
 */
export class Runner {
  private live?: Live;
  private starting?: Promise<Live>;
  private drainWaiters: (() => void)[] = [];
  /** Runner starts, the first load included. */
  modelLoads = 0;

  constructor(
    private readonly host: RunnerHost,
    /** `onChange` runs when `model` or `currentJob` changes, synchronously, so what it sends goes out before the caller's next step. */
    private readonly options: { startTimeoutMs: number; log: Logger; onChange?: () => void },
  ) {}

  get model(): Model | null {
    return this.live && !this.live.died ? this.live.model : null;
  }

  get currentJob(): string | null {
    return this.live?.outstanding[0] ?? null;
  }

  /**
   * Makes sure a runner for `model` is listening. A different model waits
   * for the jobs in the current runner to be answered, then swaps.
   */
  async ensure(model: Model): Promise<Live> {
    for (;;) {
      if (this.starting) await this.starting.catch(() => undefined);
      const live = this.live;
      if (live && !live.died && modelKey(live.model) === modelKey(model)) return live;
      if (live && !live.died && live.outstanding.length > 0) {
        await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        continue;
      }
      if (this.starting) continue;
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

  async stop(): Promise<void> {
    const live = this.live;
    this.live = undefined;
    if (!live) return;
    live.client.close();
    await live.process.stop();
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  private async replace(model: Model): Promise<Live> {
    const log = this.options.log;
    await this.stop();
    const started = Date.now();
    const process = await this.host.start(model);
    this.modelLoads += 1;
    const client = new RunnerClient({
      host: process.host,
      port: process.port,
      onWarning: (message, details) => log.warn({ model, ...details }, message),
    });
    const live: Live = { model, process, client, outstanding: [] };
    void process.exited.then((exit) => {
      live.died = exit;
      // Noted before failAll: each rejected submit removes its job from `outstanding`.
      live.culprit = live.outstanding[0];
      log.warn({ model, exit: { code: exit.code, signal: exit.signal } }, 'runner ended');
      client.failAll(new RunnerDiedError(exit));
      this.wakeDrainWaiters();
    });
    try {
      client.connect();
      await Promise.race([
        client.waitListening(this.options.startTimeoutMs),
        process.exited.then((exit) => {
          throw new RunnerStartError(`The runner for ${modelKey(model)} ended while starting: ${describeExit(exit)}`, exit);
        }),
      ]);
    } catch (error) {
      client.close();
      await process.stop();
      if (error instanceof RunnerStartError) throw error;
      throw new RunnerStartError(`The runner for ${modelKey(model)} did not listen on port ${process.port}: ${(error as Error).message}`);
    }
    log.info({ model, ms: Date.now() - started }, 'runner listening');
    this.live = live;
    this.options.onChange?.();
    return live;
  }
}

export type LiveRunner = Live;
