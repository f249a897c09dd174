import { writeFile } from 'node:fs/promises';
import { withFields } from '@shepherd/logging';
import type { Logger } from 'pino';
import type { WorkerConfig } from '@shepherd/config';
import type { Model, SheepState } from '@shepherd/contracts';
import type { CancelSignal, MetricsStore, SheepRegistry, WorkSignal } from '@shepherd/queue';
import type { HeldJobs } from './held-jobs';
import type { HeldJob, JobRunner, Outcome } from './job-run';
import type { JobSource, TakenJob } from './job-source';
import type { Runner } from './runner';
import type { Settler } from './settle';
import type { RunnerHost } from './sheep/runner-host';
import type { Staging } from './staging';

/** What a sheep worker is made of; create-sheep.ts wires them. */
export interface SheepParts {
  sheepId: string;
  worker: WorkerConfig;
  host: RunnerHost;
  runner: Runner;
  staging: Staging;
  source: JobSource;
  jobs: JobRunner;
  settler: Settler;
  held: HeldJobs;
  registry: SheepRegistry;
  signal: WorkSignal;
  cancels: CancelSignal;
  /** Flushed last when the worker stops: its increments gather in memory. */
  metrics?: MetricsStore;
  /** Aborted by stop(); the JobRunner watches the same one. */
  stopping: AbortController;
  log: Logger;
  /** Written after each heartbeat that reached Redis, for a probe that has only files (Kubernetes exec). Default: none. */
  heartbeatFile?: string;
}

interface InHand extends HeldJob {
  settled?: Promise<void>;
  lockTimer?: NodeJS.Timeout;
  /** Set once its run is over (runner answered, outputs stored): only settling is left. */
  ran?: boolean;
}

/** Jobs being settled, beyond the capacity, before the sheep stops taking more: settling may lag, never pile up. */
const SETTLING_ALLOWANCE = 2;

/**
 * One sheep: takes jobs by affinity up to its capacity (the job in the
 * runner plus `prefetch`), runs and settles each, publishes its state, and
 * stops without losing a job.
 */
export class SheepWorker {
  private readonly inHand = new Set<InHand>();
  private heartbeat?: NodeJS.Timeout;
  private loop?: Promise<void>;
  private stopped?: Promise<void>;
  private heldModel: Model | null = null;
  private capacityWaiter?: () => void;

  constructor(private readonly parts: SheepParts) {}

  private get stopping(): AbortController {
    return this.parts.stopping;
  }

  get modelLoads(): number {
    return this.parts.runner.modelLoads;
  }

  async start(): Promise<void> {
    const { staging, host, signal, held, settler, worker } = this.parts;
    await staging.reset();
    await host.cleanup();
    await signal.start();
    this.parts.cancels.onCancel((jobId) => this.cancel(jobId));
    // Before taking new jobs: what a killed worker of this sheep held goes back first.
    await held.returnLeftovers(settler).catch((error: unknown) => {
      this.parts.log.warn({ err: error }, 'could not return the jobs the previous worker held; they return when their locks lapse');
    });
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), worker.heartbeatMs);
    this.loop = this.takeJobs();
  }

  /**
   * Stops taking jobs, hands back those not yet in the runner, lets the
   * runner finish what it holds (up to the shutdown grace), then stops the
   * runner, which hands back what is still in it, and leaves.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  /** Called by the runner when its model or job changes: others see it at once. */
  async beat(): Promise<void> {
    const { sheepId, runner, registry, worker } = this.parts;
    const state: SheepState = {
      model: runner.model,
      request: runner.currentJob,
      heartbeatAt: new Date().toISOString(),
      modelLoads: runner.modelLoads,
    };
    await registry.publish(sheepId, state, worker.heartbeatMs * 3).then(
      async () => {
        if (this.parts.heartbeatFile) await writeFile(this.parts.heartbeatFile, state.heartbeatAt).catch(() => undefined);
      },
      (error: unknown) => this.parts.log.warn({ err: error }, 'heartbeat failed'),
    );
  }

  private async shutdown(): Promise<void> {
    const { worker, runner, source, registry, sheepId } = this.parts;
    this.stopping.abort();
    this.capacityWaiter?.();
    for (const held of this.inHand) held.handBack = true;
    await this.loop;
    const allSettled = () => Promise.all([...this.inHand].map((held) => held.settled));
    const grace = new Promise((resolve) => setTimeout(resolve, worker.shutdownGraceMs).unref());
    await Promise.race([allSettled(), grace]);
    clearInterval(this.heartbeat);
    await runner.stop();
    await allSettled();
    await source.close();
    await this.parts.metrics?.flush();
    await registry.remove(sheepId).catch(() => undefined);
  }

  /** A client cancelled `jobId`: if this sheep holds it, it is not run or its runner is stopped. */
  private cancel(jobId: string): void {
    for (const held of this.inHand) {
      if (held.data.jobId === jobId) this.parts.jobs.cancel(held, withFields(this.parts.log, { jobId }));
    }
  }

  private async takeJobs(): Promise<void> {
    const { worker, source, log } = this.parts;
    const limit = worker.prefetch + 1;
    while (!this.stopping.signal.aborted) {
      // Capacity counts the jobs the runner still has to answer: the next one is taken while the last is
      // settled, so it is staged and waiting in the runner before the runner is free (a slow settle left the runner idle).
      if (this.awaitingRunner() >= limit || this.inHand.size >= limit + SETTLING_ALLOWANCE) {
        await new Promise<void>((resolve) => (this.capacityWaiter = resolve));
        continue;
      }
      let taken: TakenJob | null;
      try {
        taken = await source.next(
          () => this.heldModel,
          () => this.inHand.size > 0,
          this.stopping.signal,
        );
      } catch (error) {
        log.error({ err: error }, 'could not take a job; retrying');
        await new Promise((resolve) => setTimeout(resolve, worker.pollIntervalMs));
        continue;
      }
      if (!taken) break;
      this.hold(taken);
    }
  }

  private awaitingRunner(): number {
    let count = 0;
    for (const held of this.inHand) if (!held.ran) count += 1;
    return count;
  }

  private hold(taken: TakenJob): void {
    const { held: heldJobs, jobs, settler, signal } = this.parts;
    this.heldModel = taken.data.model;
    const held: InHand = { ...taken, attempts: 0 };
    this.inHand.add(held);
    heldJobs.hold(taken.data.jobId, taken.queue, taken.token);
    this.holdLock(held);
    held.settled = jobs
      .run(held)
      .catch((error: unknown): Outcome => {
        this.parts.log.error({ err: error, jobId: held.data.jobId }, 'job run crashed');
        return { kind: 'failed', details: { message: `Could not run the job: ${(error as Error).message}` } };
      })
      .then((outcome) => {
        held.ran = true;
        this.capacityWaiter?.();
        return settler.settle(held, outcome);
      })
      .then(() => heldJobs.release(held.data.jobId))
      .finally(() => {
        clearInterval(held.lockTimer);
        this.inHand.delete(held);
        this.capacityWaiter?.();
        signal.wakeAll(); // an idle sheep may take any model: look again now
      });
  }

  private holdLock(held: InHand): void {
    const duration = this.parts.worker.lockDurationMs;
    held.lockTimer = setInterval(() => {
      held.job.extendLock(held.token, duration).catch(() => undefined);
    }, Math.max(200, Math.floor(duration / 3)));
  }
}
