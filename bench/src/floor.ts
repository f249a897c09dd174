// The floor: the least work any job server must do for one job, done with raw
// clients in one process and no Shepherd code, so Shepherd's figures can be
// read against it. Per job: one HTTP POST, the input written to a file and
// read back, a BullMQ add and take, one ZeroMQ runner round trip, the output
// read back and one status write.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import { Dealer, Router } from 'zeromq';
import { percentiles, type Percentiles } from './stats';

export interface FloorOptions {
  /** Redis to use, e.g. `redis://127.0.0.1:6379`. */
  redisUrl: string;
  /** BullMQ key prefix; the floor's queue under it is obliterated at the end. */
  prefix: string;
  /** Scratch directory for the job files; removed at the end. */
  dir: string;
  /** BullMQ Workers, each with its own runner (concurrency 1 each). Default 1. */
  sheep?: 1 | 2;
  /** Limit on one job from its submit to done, in ms. Default 60 000. */
  jobTimeoutMs?: number;
  /** Jobs run one by one first and not counted (JIT, connections). Default 5. */
  warmup?: number;
}

export interface FloorLatency extends Percentiles {
  /** Submit→done of each measured job, in ms, in run order. */
  samplesMs: number[];
}

export interface FloorThroughput {
  jobs: number;
  seconds: number;
  /** Jobs from the first submit to the last done, per second. */
  jobsPerSecond: number;
}

const QUEUE_NAME_PREFIX = 'floor';
const PAYLOAD = JSON.stringify({ x: 1 });
const OUTPUT = JSON.stringify({ result: { x: 1 } });
const MAX_BODY = 1024 * 1024;
const REDIS_TIMEOUT_MS = 5_000;

/** Idle: one job at a time; submit→done latency of each of `jobs` jobs. */
export async function floorLatency(options: FloorOptions & { jobs: number }): Promise<FloorLatency> {
  return withPipeline(options, async (pipeline) => {
    const samplesMs: number[] = [];
    for (let i = 0; i < options.jobs; i++) samplesMs.push(await pipeline.runOne());
    return { ...percentiles(samplesMs), samplesMs };
  });
}

/** Saturated: `jobs` jobs submitted up front by `concurrency` HTTP clients. */
export async function floorThroughput(
  options: FloorOptions & { jobs: number; concurrency: number },
): Promise<FloorThroughput> {
  return withPipeline(options, async (pipeline) => {
    const done: Promise<number>[] = [];
    let next = 0;
    const start = performance.now();
    const client = async (): Promise<void> => {
      while (next < options.jobs) {
        next++;
        const { finished, submitted } = pipeline.submit();
        done.push(finished);
        await submitted;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, client));
    const ends = await Promise.all(done);
    const seconds = (Math.max(start, ...ends) - start) / 1000;
    return { jobs: options.jobs, seconds, jobsPerSecond: options.jobs / seconds };
  });
}

/** Both measurements, each on a fresh pipeline: idle latency, then saturated throughput. */
export async function runFloor(
  options: FloorOptions & { jobs: number; concurrency: number },
): Promise<{ latency: FloorLatency; throughput: number }> {
  const latency = await floorLatency(options);
  const { jobsPerSecond } = await floorThroughput(options);
  return { latency, throughput: jobsPerSecond };
}

interface Pipeline {
  /** Starts one job; `finished` resolves with performance.now() at its status write. */
  submit(): { submitted: Promise<void>; finished: Promise<number> };
  /** Runs one job alone and returns its submit→done time in ms. */
  runOne(): Promise<number>;
}

async function withPipeline<T>(options: FloorOptions, measure: (pipeline: Pipeline) => Promise<T>): Promise<T> {
  const { dir, prefix } = options;
  const jobTimeoutMs = options.jobTimeoutMs ?? 60_000;
  const queueName = `${QUEUE_NAME_PREFIX}-${randomBytes(4).toString('hex')}`;
  const connection = redisOptions(options.redisUrl);
  const waiters = new Map<string, { resolve: (at: number) => void; reject: (error: Error) => void }>();
  const settle = (jobId: string, error?: Error): void => {
    const at = performance.now();
    const waiter = waiters.get(jobId);
    waiters.delete(jobId);
    if (error) waiter?.reject(error);
    else waiter?.resolve(at);
  };

  await mkdir(dir, { recursive: true });
  const queue = new Queue(queueName, { connection, prefix });
  queue.on('error', () => undefined); // surfaced through the calls' timeouts
  const cleanups: (() => Promise<unknown>)[] = [];
  const server = createServer((req, res) => void receive(req, res, dir, queue));
  const agent = new Agent({ keepAlive: true });
  try {
    cleanups.push(async () => {
      await withTimeout(queue.obliterate({ force: true }), REDIS_TIMEOUT_MS, 'obliterate').catch(() => undefined);
      await shut(queue);
    });
    await withTimeout(queue.waitUntilReady(), REDIS_TIMEOUT_MS, `Redis at ${options.redisUrl}`);
    for (let s = 0; s < (options.sheep ?? 1); s++) {
      const runner = new Router({ linger: 0 });
      const link = new Dealer({ linger: 0, receiveTimeout: jobTimeoutMs, sendTimeout: jobTimeoutMs });
      let runnerLoop: Promise<void> = Promise.resolve();
      const worker = new Worker<{ jobId: string }>(
        queueName,
        async (job) => {
          try {
            await consume(job.data.jobId, dir, link);
            settle(job.data.jobId);
          } catch (error) {
            settle(job.data.jobId, error as Error);
            throw error;
          }
        },
        { connection, prefix, concurrency: 1, autorun: false },
      );
      worker.on('error', () => undefined); // surfaced through the jobs' timeouts
      cleanups.unshift(async () => {
        await shut(worker);
        link.close();
        runner.close();
        await runnerLoop;
      });
      await runner.bind('tcp://127.0.0.1:*');
      runnerLoop = serveRunner(runner);
      link.connect(runner.lastEndpoint ?? '');
      void worker.run().catch(() => undefined);
      await withTimeout(worker.waitUntilReady(), REDIS_TIMEOUT_MS, `Redis at ${options.redisUrl}`);
    }
    cleanups.unshift(async () => {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    const submit = (): { submitted: Promise<void>; finished: Promise<number> } => {
      const jobId = `j-${randomBytes(6).toString('hex')}`;
      const finished = new Promise<number>((resolve, reject) => waiters.set(jobId, { resolve, reject }));
      const timed = withTimeout(finished, jobTimeoutMs, `floor job ${jobId}`);
      const submitted = post(port, agent, JSON.stringify({ job_id: jobId, payload: PAYLOAD }), jobTimeoutMs);
      submitted.catch((error: Error) => settle(jobId, error));
      timed.catch(() => waiters.delete(jobId));
      return { submitted, finished: timed };
    };
    const runOne = async (): Promise<number> => {
      const start = performance.now();
      const { submitted, finished } = submit();
      const [, at] = await Promise.all([submitted, finished]);
      return at - start;
    };
    for (let i = 0; i < (options.warmup ?? 5); i++) await runOne();
    return await measure({ submit, runOne });
  } finally {
    for (const cleanup of cleanups) {
      await withTimeout(cleanup(), 3 * REDIS_TIMEOUT_MS, 'floor cleanup').catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** The HTTP side: store the input, enqueue, answer 200. */
async function receive(req: IncomingMessage, res: ServerResponse, dir: string, queue: Queue): Promise<void> {
  const answer = (status: number, body: object): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) return answer(413, { message: 'body too large' });
      chunks.push(chunk);
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { job_id?: unknown; payload?: unknown };
    const { job_id: jobId, payload } = body;
    if (typeof jobId !== 'string' || !/^[a-z][a-z0-9-]{0,62}$/.test(jobId) || typeof payload !== 'string') {
      return answer(400, { message: 'job_id and payload (strings) are required' });
    }
    await mkdir(join(dir, jobId, 'inputs'), { recursive: true });
    await writeFile(join(dir, jobId, 'inputs', 'input'), payload);
    await queue.add('job', { jobId }, { jobId, removeOnComplete: { count: 10_000 }, removeOnFail: { count: 10_000 } });
    return answer(200, { success: true });
  } catch (error) {
    return answer(500, { message: (error as Error).message });
  }
}

/** The sheep side of one job: read the input, run it on the runner, read the output, write the status. */
async function consume(jobId: string, dir: string, link: Dealer): Promise<void> {
  const jobDir = join(dir, jobId);
  await readFile(join(jobDir, 'inputs', 'input'));
  await mkdir(join(jobDir, 'outputs'));
  const input = { message: { identity: '', job_id: jobId, message_type: 'InputMessage', io_data_root: dir } };
  await link.send(JSON.stringify(input));
  const [frame] = await link.receive();
  const reply = JSON.parse(String(frame)) as { message?: { job_id?: string; message_type?: string } };
  if (reply.message?.message_type !== 'DoneMessage' || reply.message.job_id !== jobId) {
    throw new Error(`runner answered ${String(frame)} for ${jobId}`);
  }
  await readFile(join(jobDir, 'outputs', 'output'));
  const status = { status: 'done', finished_at: new Date().toISOString() };
  await writeFile(join(jobDir, 'job_status.json'), JSON.stringify(status));
}

/** A no-op runner: writes the output and answers DoneMessage at once. Ends when the socket closes. */
async function serveRunner(router: Router): Promise<void> {
  try {
    for await (const [identity, frame] of router) {
      if (!identity || !frame) continue;
      const { message } = JSON.parse(String(frame)) as { message: { job_id: string; io_data_root: string } };
      await writeFile(join(message.io_data_root, message.job_id, 'outputs', 'output'), OUTPUT);
      const done = { message: { identity: '', job_id: message.job_id, message_type: 'DoneMessage' } };
      await router.send([identity, JSON.stringify(done)]);
    }
  } catch {
    // closed while receiving or sending: the run is over
  }
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

function redisOptions(url: string): ConnectionOptions {
  const parsed = new URL(url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: Number(parsed.port || 6379),
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    maxRetriesPerRequest: null,
  };
}

/** Closes a BullMQ client, or drops its connections when Redis does not answer in time. */
async function shut(client: Queue | Worker): Promise<void> {
  await withTimeout(client.close(), REDIS_TIMEOUT_MS, 'close').catch(() => client.disconnect());
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
