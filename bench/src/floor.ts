// The floor: the least work any job server must do for one job, done with raw
// clients and no Shepherd code, so Shepherd's figures can be read against it.
// Per job: one HTTP POST, the input stored and read back, a BullMQ add and
// take, one ZeroMQ runner round trip, the output read back and one status
// write (S3: see floor-store.ts). Its processes mirror Shepherd's (a gateway,
// a worker and a runner per sheep: floor-node.ts) so each kind's CPU can be
// set against Shepherd's; the HTTP clients run in the bench's own process.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Queue } from 'bullmq';
import type { ChildProcess } from 'node:child_process';
import { tempDir } from '@shepherd/testing';
import { endChild, forkReady } from './children';
import { connection, type FloorNodeOptions } from './floor-node';
import type { FloorStorage } from './floor-store';
import type { ProcessKinds } from './procs';
import { percentiles, type Percentiles } from './stats';

export interface FloorOptions {
  /** Redis to use, e.g. `redis://127.0.0.1:6379`. */
  redisUrl: string;
  /** BullMQ key prefix; the floor's queue under it is obliterated at the end. */
  prefix: string;
  /** Workers, each with its own runner (concurrency 1 each). Default 1. */
  sheep?: 1 | 2;
  /** Default the filesystem. */
  storage?: FloorStorage;
  /** Environment of the floor's processes (the loop probe). */
  env?: NodeJS.ProcessEnv;
  /** Limit on one job from its submit to done, in ms. Default 60 000. */
  jobTimeoutMs?: number;
  /** Jobs run one by one first and not counted (JIT, connections). Default 5. */
  warmup?: number;
}

export interface FloorLatency extends Percentiles {
  /** Submit→done of each measured job, in ms, in run order. */
  samplesMs: number[];
}

export interface Floor {
  /** Starts one job; `finished` resolves with performance.now() when its worker reports it done. */
  submit(payload?: string): { submitted: Promise<void>; finished: Promise<number> };
  /** Runs one job alone and returns its submit→done time in ms. */
  runOne(): Promise<number>;
  /** The floor's processes by kind, for CPU and event-loop readings. */
  processes(): ProcessKinds;
  stop(): Promise<void>;
}

const PAYLOAD = JSON.stringify({ x: 1 });
const REDIS_TIMEOUT_MS = 5_000;

/** Starts the floor's processes: runners, then workers, then the gateway. */
export async function startFloor(options: FloorOptions): Promise<Floor> {
  const jobTimeoutMs = options.jobTimeoutMs ?? 60_000;
  const storageDir = tempDir('floor');
  const base: FloorNodeOptions = {
    redisUrl: options.redisUrl,
    prefix: options.prefix,
    queueName: `floor-${randomBytes(4).toString('hex')}`,
    dir: storageDir,
    storage: options.storage ?? { kind: 'filesystem' },
  };
  const waiters = new Map<string, { resolve: (at: number) => void; reject: (error: Error) => void }>();
  const settle = (jobId: string, error?: Error): void => {
    const at = performance.now();
    const waiter = waiters.get(jobId);
    waiters.delete(jobId);
    if (error) waiter?.reject(error);
    else waiter?.resolve(at);
  };
  const children: { kind: string; child: ChildProcess }[] = [];
  const agent = new Agent({ keepAlive: true });
  const dirs = [storageDir];
  const stop = async (): Promise<void> => {
    agent.destroy();
    for (const { child } of [...children].reverse()) await endChild(child);
    const queue = new Queue(base.queueName, { connection: connection(options.redisUrl), prefix: base.prefix });
    queue.on('error', () => undefined);
    await withTimeout(queue.obliterate({ force: true }), REDIS_TIMEOUT_MS, 'obliterate').catch(() => undefined);
    await withTimeout(queue.close(), REDIS_TIMEOUT_MS, 'close').catch(() => queue.disconnect());
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  };
  const start = async <T extends object>(kind: string, role: string, nodeOptions: FloorNodeOptions): Promise<T> => {
    const { child, ready } = await forkReady<T>('floor-node.js', [role, JSON.stringify(nodeOptions)], options.env);
    children.push({ kind, child });
    return ready;
  };
  try {
    for (let s = 0; s < (options.sheep ?? 1); s++) {
      const { endpoint } = await start<{ endpoint: string }>('runners', 'runner', base);
      // S3: each worker stages into its own folder, as Shepherd's sheep do; filesystem: the storage folder itself.
      const dir = base.storage.kind === 's3' ? tempDir('floor-sheep') : storageDir;
      dirs.push(dir);
      await start('workers', 'sheep', { ...base, dir, endpoint });
      children[children.length - 1]?.child.on('message', (m: { type?: string; jobId?: string; message?: string }) => {
        if (m.type === 'done' && m.jobId) settle(m.jobId);
        if (m.type === 'failed' && m.jobId) settle(m.jobId, new Error(m.message));
      });
    }
    const { port } = await start<{ port: number }>('gateway', 'gateway', base);

    const submit = (payload = PAYLOAD): { submitted: Promise<void>; finished: Promise<number> } => {
      const jobId = `j-${randomBytes(6).toString('hex')}`;
      const finished = new Promise<number>((resolve, reject) => waiters.set(jobId, { resolve, reject }));
      const timed = withTimeout(finished, jobTimeoutMs, `floor job ${jobId}`);
      const submitted = post(port, agent, JSON.stringify({ job_id: jobId, payload }), jobTimeoutMs);
      submitted.catch((error: Error) => settle(jobId, error));
      timed.catch(() => waiters.delete(jobId));
      return { submitted, finished: timed };
    };
    const runOne = async (): Promise<number> => {
      const begin = performance.now();
      const { submitted, finished } = submit();
      const [, at] = await Promise.all([submitted, finished]);
      return at - begin;
    };
    for (let i = 0; i < (options.warmup ?? 5); i++) await runOne();
    const processes = (): ProcessKinds => {
      const kinds: ProcessKinds = { gateway: [], workers: [], runners: [] };
      for (const { kind, child } of children) if (child.pid) kinds[kind]?.push(child.pid);
      return kinds;
    };
    return { submit, runOne, processes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Idle: one job at a time; submit→done latency of each of `jobs` jobs. */
export async function floorLatency(floor: Floor, jobs: number): Promise<FloorLatency> {
  const samplesMs: number[] = [];
  for (let i = 0; i < jobs; i++) samplesMs.push(await floor.runOne());
  return { ...percentiles(samplesMs), samplesMs };
}

/** Saturated: `jobs` jobs submitted by `concurrency` HTTP clients; jobs/s from the first submit to the last done. */
export async function floorThroughput(floor: Floor, jobs: number, concurrency = 16, payload?: string): Promise<number> {
  const done: Promise<number>[] = [];
  let next = 0;
  const start = performance.now();
  const client = async (): Promise<void> => {
    while (next < jobs) {
      next++;
      const { finished, submitted } = floor.submit(payload);
      done.push(finished);
      await submitted;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, client));
  const ends = await Promise.all(done);
  return jobs / ((Math.max(start, ...ends) - start) / 1000);
}

function post(port: number, agent: Agent, body: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/jobs', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`submit: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('submit timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
