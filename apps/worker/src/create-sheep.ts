import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import { CancelSignal, JobQueues, MetricsStore, RedisKeys, type RedisClient, SheepRegistry, StatusStore, WebhookOutbox, WorkSignal } from '@shepherd/queue';
import { ProgressCoalescer } from '@shepherd/runner';
import type { JobStorage } from '@shepherd/storage';
import { HeldJobs } from './held-jobs';
import { JobRunner } from './job-run';
import { JobSource } from './job-source';
import { Runner } from './runner';
import { Settler } from './settle';
import { SheepWorker } from './sheep-worker';
import type { RunnerHost } from './sheep/runner-host';
import { Staging } from './staging';

/** Least time between two progress writes for one job. */
const PROGRESS_INTERVAL_MS = 250;

export interface SheepWorkerDeps {
  sheepId: string;
  config: ShepherdConfig;
  storage: JobStorage;
  /** A worker connection (`maxRetriesPerRequest: null`). */
  redis: RedisClient;
  /** For the wake-up channel only. */
  subscriber: RedisClient;
  host: RunnerHost;
  log: Logger;
  /** See SheepParts.heartbeatFile. */
  heartbeatFile?: string;
}

/** Wires one sheep's worker from its config and connections. */
export function createSheepWorker(deps: SheepWorkerDeps): SheepWorker {
  const { config, redis, subscriber, storage, sheepId, host, log } = deps;
  const keys = new RedisKeys(config.redis.prefix, { cluster: Boolean(config.redis.cluster) });
  const sheepConfig = config.sheep[sheepId];
  const statuses = new StatusStore(redis, storage, keys);
  // Webhooks of the changes this worker writes (start, progress, completed); the gateway delivers them.
  new WebhookOutbox(redis, keys, {
    retryForMs: config.webhooks.retryForMs,
    onError: (error, delivery) => log.warn({ jobId: delivery.jobId, event: delivery.eventType, err: error }, 'could not queue a webhook delivery'),
  }).attach(statuses);
  const registry = new SheepRegistry(redis, keys);
  const metrics = new MetricsStore(redis, keys);
  const signal = new WorkSignal(subscriber, keys);
  const cancels = new CancelSignal(redis, keys);
  // Subscribed before any job is taken; the wake-up channel shares the connection.
  void cancels.listen(subscriber).catch((error: unknown) => log.warn({ err: error }, 'could not subscribe to cancels; cancelled jobs stop at their next step'));
  const queues = new JobQueues(redis, keys);
  const staging = new Staging(storage, join(resolve(config.dataRoot), sheepId));
  const stopping = new AbortController();
  // Others see a new model or job in hand at once, not at the next heartbeat.
  // Runner progress into the job's status: at most one write per job per 250 ms, never awaited by the job; held back ones die with its answer.
  const progress = new ProgressCoalescer({
    intervalMs: PROGRESS_INTERVAL_MS,
    write: (jobId, value, message) => statuses.progress(jobId, value, message),
    isLive: (jobId) => runner.currentJob === jobId,
    onError: (jobId, error) => log.debug({ jobId, err: error }, 'could not record progress'),
  });
  const runner = new Runner(host, {
    startTimeoutMs: config.worker.startTimeoutMs,
    log,
    onChange: () => void worker.beat(),
    onProgress: (jobId, value, message) => progress.report(jobId, value, message),
  });
  const settler = new Settler({ sheepId, redis, keys, statuses, metrics, staging, worker: config.worker, log });
  const source = new JobSource({
    sheepId,
    connection: redis,
    keys,
    queues,
    registry,
    signal,
    otherSheep: Object.keys(config.sheep).filter((id) => id !== sheepId),
    lockDurationMs: config.worker.lockDurationMs,
    pollIntervalMs: config.worker.pollIntervalMs,
    jobIdRule: storage.jobIdRule,
    onInvalid: async (rejected) => {
      await settler.reject(rejected);
    },
    onStalledFailure: (jobId, reason) => void settler.failStalled(jobId, reason),
    onlyModel: sheepConfig?.type === 'external' ? sheepConfig.model : undefined,
  });
  const jobs = new JobRunner({ sheepId, runner, staging, statuses, metrics, maxAttempts: config.worker.maxAttempts, stopping: stopping.signal, log });
  const held = new HeldJobs({ sheepId, redis, keys, queues, lockDurationMs: config.worker.lockDurationMs, log });
  const worker = new SheepWorker({ sheepId, worker: config.worker, host, runner, staging, source, jobs, settler, held, registry, signal, cancels, metrics, stopping, log, heartbeatFile: deps.heartbeatFile });
  return worker;
}
