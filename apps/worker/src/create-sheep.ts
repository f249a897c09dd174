import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import { CancelSignal, JobQueues, MetricsStore, RedisKeys, SheepRegistry, StatusStore, WorkSignal } from '@shepherd/queue';
import type { JobStorage } from '@shepherd/storage';
import { HeldJobs } from './held-jobs';
import { JobRunner } from './job-run';
import { JobSource } from './job-source';
import { Runner } from './runner';
import { Settler } from './settle';
import { SheepWorker } from './sheep-worker';
import type { RunnerHost } from './sheep/runner-host';
import { Staging } from './staging';

export interface SheepWorkerDeps {
  sheepId: string;
  config: ShepherdConfig;
  storage: JobStorage;
  /** A worker connection (`maxRetriesPerRequest: null`). */
  redis: Redis;
  /** For the wake-up channel only. */
  subscriber: Redis;
  host: RunnerHost;
  log: Logger;
}

/** Wires one sheep's worker from its config and connections. */
export function createSheepWorker(deps: SheepWorkerDeps): SheepWorker {
  const { config, redis, subscriber, storage, sheepId, host, log } = deps;
  const keys = new RedisKeys(config.redis.prefix);
  const statuses = new StatusStore(redis, storage, keys);
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
  const runner = new Runner(host, { startTimeoutMs: config.worker.startTimeoutMs, log, onChange: () => void worker.beat() });
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
  });
  const jobs = new JobRunner({ sheepId, runner, staging, statuses, metrics, maxAttempts: config.worker.maxAttempts, stopping: stopping.signal, log });
  const held = new HeldJobs({ sheepId, redis, keys, queues, lockDurationMs: config.worker.lockDurationMs, log });
  const worker = new SheepWorker({ sheepId, worker: config.worker, host, runner, staging, source, jobs, settler, held, registry, signal, cancels, stopping, log });
  return worker;
}
