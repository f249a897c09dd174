import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { modelQueueName, queueJobId, type Model } from '@shepherd/contracts';
import { freePort, waitFor } from '@shepherd/testing';

const CLI = join(__dirname, '../dist/cli.js');

/** The steps of a submit, in order, as the test hook names them. */
export const SUBMIT_STEPS = ['claimed', 'stored', 'prepared', 'added', 'committed'] as const;
export type SubmitStep = (typeof SUBMIT_STEPS)[number];

/** Everything a test starts, so afterEach can end it whatever happened. */
export class Cleanup {
  private readonly tasks: Array<() => Promise<void> | void> = [];

  add(task: () => Promise<void> | void): void {
    this.tasks.push(task);
  }

  async run(): Promise<void> {
    const tasks = this.tasks.splice(0).reverse();
    for (const task of tasks) {
      try {
        await task();
      } catch (error) {
        console.warn('cleanup step failed', error);
      }
    }
  }
}

export interface GatewayConfigOptions {
  redisUrl: string;
  prefix: string;
  storage: Record<string, unknown>;
}

/** Writes the gateway's config (JSON is YAML) with the short lease and reconcile interval the tests wait on. */
export function writeGatewayConfig(dir: string, options: GatewayConfigOptions): string {
  const path = join(dir, 'shepherd.yml');
  const config = {
    storage: options.storage,
    redis: { url: options.redisUrl, prefix: options.prefix },
    logging: { level: 'warn' },
    gateway: { submit_lease: '1s', reconcile_interval: '500ms', shutdown_grace: '1s' },
    sheep: {},
  };
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

export interface GatewayProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** What the process wrote so far (stdout and stderr, the last 64 KiB). */
  output(): string;
  /** Resolves when stderr/stdout has shown `pattern`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `node dist/cli.js` and waits for /health; `hook` sets SHEPHERD_TEST_SUBMIT_HOOK. */
export async function spawnGateway(
  configPath: string,
  options: { port?: number; hook?: string; cleanup: Cleanup },
): Promise<GatewayProcess> {
  const port = options.port ?? (await freePort());
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.SHEPHERD_TEST_SUBMIT_HOOK;
  if (options.hook) env.SHEPHERD_TEST_SUBMIT_HOOK = options.hook;
  const child = spawn(process.execPath, [CLI, '-c', configPath, '-h', '127.0.0.1', '-p', String(port)], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const listeners = new Set<() => void>();
  const append = (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-64 * 1024);
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  const handle: GatewayProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    output: () => text,
    exited,
    running,
    waitForOutput(pattern, timeoutMs = 15_000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(text)) finish();
        };
        const onExit = () => finish(new Error(`the gateway exited before printing ${pattern}; its output:\n${text}`));
        const timer = setTimeout(
          () => finish(new Error(`Timed out waiting for ${pattern} from the gateway; its output:\n${text}`)),
          timeoutMs,
        );
        const finish = (error?: Error) => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
          if (error) reject(error);
          else resolve();
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      });
    },
    async kill(signal = 'SIGKILL') {
      if (!running()) return;
      child.kill(signal);
      await exited;
    },
  };
  options.cleanup.add(() => handle.kill('SIGKILL'));
  try {
    await waitFor(
      async () => {
        if (!running()) throw new Error(`the gateway exited at start; its output:\n${text}`);
        return fetch(`${handle.url}/health`).then((r) => r.ok, () => false);
      },
      20_000,
      'the gateway to answer /health',
    );
  } catch (error) {
    await handle.kill();
    throw error;
  }
  return handle;
}

export interface SubmitBody {
  job_id: string;
  model: Model;
  payload?: string;
}

export function postJson(url: string, body: unknown, timeoutMs = 20_000): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

export interface Answer {
  status: number;
  body: unknown;
}

/** One submit; a dropped connection or no answer within `timeoutMs` is an answer of its own (status 0). */
export async function submitOnce(url: string, body: SubmitBody, timeoutMs?: number): Promise<Answer> {
  try {
    const response = await postJson(`${url}/start-job`, body, timeoutMs);
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed };
  } catch (error) {
    return { status: 0, body: String((error as Error).cause ?? error) };
  }
}

/**
 * The client's retry rule: 503 and dropped connections are tried again after
 * a short wait; any other answer ends it (409 on a retry counts as success).
 */
export async function submitWithRetry(
  url: () => string,
  body: SubmitBody,
  timeoutMs = 30_000,
): Promise<{ final: Answer; attempts: Answer[] }> {
  const deadline = Date.now() + timeoutMs;
  const attempts: Answer[] = [];
  for (;;) {
    const answer = await submitOnce(url(), body);
    attempts.push(answer);
    if (answer.status !== 0 && answer.status !== 503) return { final: answer, attempts };
    if (Date.now() > deadline) {
      throw new Error(`the submit was still refused after ${timeoutMs} ms: ${JSON.stringify(attempts.slice(-5))}`);
    }
    await sleep(200);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads BullMQ's side directly: the model queue under the gateway's prefix. */
export class QueueProbe {
  private readonly redis: Redis;
  private readonly queue: Queue;

  constructor(redisUrl: string, prefix: string, model: Model) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.redis.on('error', () => undefined);
    this.queue = new Queue(modelQueueName(model), { connection: this.redis, prefix });
    this.queue.on('error', () => undefined);
  }

  async job(jobId: string): Promise<{ id: string; data: unknown } | null> {
    const job = await this.queue.getJob(queueJobId(jobId));
    return job ? { id: String(job.id), data: job.data } : null;
  }

  /** Jobs of the queue in every state. */
  async total(): Promise<number> {
    const counts = await this.queue.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'prioritized',
      'completed',
      'failed',
      'waiting-children',
    );
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
  }
}

/** Makes a directory tree immutable (even root cannot write it): a filesystem that refuses every write. */
export function freeze(dir: string): void {
  execFileSync('chattr', ['-R', '+i', dir]);
}

export function thaw(dir: string): void {
  execFileSync('chattr', ['-R', '-i', dir], { stdio: 'ignore' });
}

export function removeDir(dir: string): void {
  try {
    thaw(dir);
  } catch {
    // not frozen, or gone
  }
  rmSync(dir, { recursive: true, force: true });
}
