import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yaml from 'js-yaml';
import { Redis } from 'ioredis';
import { deleteKeys, freePort, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { descendants, type ProcessKinds } from './procs';

export const REPO = resolve(__dirname, '../..');
/** Extra node flags for the gateway and workers, e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** Where the gateway's and workers' output goes (warnings and crashes); kept after the run. */
export const LOG_DIR = join(tmpdir(), 'shepherd-bench-logs');

/** Where a LocalShepherd keeps jobs: the filesystem (default) or S3 in one of its layouts. */
export type BenchStorage = { kind: 'filesystem' } | { kind: 's3'; url: string; layout: 'bucket-per-job' | 'single-bucket' };

export interface LocalShepherdOptions {
  /** Default the filesystem. */
  storage?: BenchStorage;
  /** Environment of the gateway and workers (the loop probe). Default this process's. */
  env?: NodeJS.ProcessEnv;
}

/** A real Shepherd: the gateway and worker processes, on a fresh Redis prefix and filesystem or S3 storage. */
export class LocalShepherd {
  readonly dir = tempDir('shepherd-bench');
  readonly prefix = uniqueId('bench');
  readonly configPath = join(this.dir, 'shepherd.yml');
  url = '';
  gateway?: ChildProcess;
  readonly workers = new Map<string, ChildProcess>();
  private readonly redis: Redis;
  private stopped = false;

  constructor(
    private readonly redisUrl: string,
    readonly sheepIds: string[],
    private readonly options: LocalShepherdOptions = {},
  ) {
    this.redis = new Redis(redisUrl);
  }

  async start(): Promise<void> {
    const sheep: Record<string, unknown> = {};
    for (const id of this.sheepIds) {
      sheep[id] = { type: 'bare', port: await freePort(), working_directory: join(REPO, 'examples/models') };
    }
    sheep.copy = { type: 'bare', port: await freePort(), working_directory: join(REPO, 'bench/models') };
    const port = await freePort();
    const storage = this.options.storage ?? { kind: 'filesystem' };
    // Unset means the config schema's default prefetch, the one the targets are about.
    const prefetch = process.env.BENCH_PREFETCH ? { prefetch: Number(process.env.BENCH_PREFETCH) } : {};
    writeFileSync(
      this.configPath,
      yaml.dump({
        data_root: join(this.dir, 'data'),
        storage:
          storage.kind === 's3'
            ? { backend: 's3', url: storage.url, access_key: 'S3RVER', secret_key: 'S3RVER', layout: storage.layout, bucket: uniqueId('bench') }
            : { backend: 'filesystem', root: join(this.dir, 'storage') },
        redis: { url: this.redisUrl, prefix: this.prefix },
        logging: { level: 'warn' },
        gateway: { host: '127.0.0.1', port, upload_limit: '2gb' },
        worker: { heartbeat: '500ms', poll_interval: '500ms', ...prefetch },
        sheep,
      }),
    );
    this.url = `http://127.0.0.1:${port}`;
    this.gateway = spawn(process.execPath, [...NODE_ARGS, join(REPO, 'apps/gateway/dist/cli.js'), '-c', this.configPath], { stdio: this.logTo('gateway'), env: this.options.env });
    await waitFor(() => fetch(`${this.url}/status`).then((r) => r.ok, () => false), 30_000, 'the gateway');
  }

  async startWorker(sheepId: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, [...NODE_ARGS, join(REPO, 'apps/worker/dist/main.js'), '-c', this.configPath, '--sheep', sheepId], { stdio: this.logTo(`worker-${sheepId}`), env: this.options.env });
    this.workers.set(sheepId, child);
    await waitFor(async () => (await this.sheepState(sheepId)) !== null, 30_000, `worker ${sheepId}`);
    return child;
  }

  /** stdio for a child: its stdout and stderr appended to LOG_DIR/<prefix>-<name>.log. */
  private logTo(name: string): ['ignore', number, number] {
    mkdirSync(LOG_DIR, { recursive: true });
    const fd = openSync(join(LOG_DIR, `${this.prefix}-${name}.log`), 'a');
    setImmediate(() => closeSync(fd)); // the child holds its own copy once spawned
    return ['ignore', fd, fd];
  }

  /** The gateway, the workers and their runners (every descendant of a worker). */
  processes(): ProcessKinds {
    const workers = [...this.workers.values()].map((child) => child.pid).filter((pid): pid is number => pid !== undefined);
    return { gateway: this.gateway?.pid ? [this.gateway.pid] : [], workers, runners: workers.flatMap(descendants) };
  }

  async stopWorker(sheepId: string): Promise<void> {
    const child = this.workers.get(sheepId);
    this.workers.delete(sheepId);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await this.redis.del(`${this.prefix}:sheep:${sheepId}`);
  }

  async sheepState(sheepId: string): Promise<{ modelLoads?: number; model: unknown } | null> {
    const value = await this.redis.get(`${this.prefix}:sheep:${sheepId}`);
    return value ? JSON.parse(value) : null;
  }

  async submit(jobId: string, model: { name: string; version: string }, payload?: string, sheepId?: string): Promise<void> {
    const response = await fetch(`${this.url}/start-job`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: jobId, model, ...(payload === undefined ? {} : { payload }), ...(sheepId ? { sheep_id: sheepId } : {}) }),
    });
    if (response.status !== 200) throw new Error(`start-job ${jobId}: ${response.status} ${await response.text()}`);
  }

  async waitDone(jobId: string): Promise<Record<string, unknown>> {
    const status = (await (await fetch(`${this.url}/jobs/${jobId}/wait_ready?timeout=600`)).json()) as Record<string, unknown>;
    if (status.status !== 'done') throw new Error(`job ${jobId} ended ${JSON.stringify(status)}`);
    return status;
  }

  async result(jobId: string): Promise<Record<string, unknown>> {
    return (await (await fetch(`${this.url}/jobs/${jobId}/result`)).json()) as Record<string, unknown>;
  }

  async stop(): Promise<void> {
    for (const id of [...this.workers.keys()]) await this.stopWorker(id);
    if (this.stopped) return;
    this.stopped = true;
    if (this.gateway && this.gateway.exitCode === null && this.gateway.signalCode === null) {
      const exited = new Promise((r) => this.gateway?.once('exit', r));
      this.gateway.kill('SIGTERM');
      await exited;
    }
    this.redis.disconnect();
    await deleteKeys(`${this.prefix}:`, this.redisUrl);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resident set size of a process in MB, from /proc. */
export function rssMb(pid: number | undefined): number {
  if (!pid) return 0;
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
}

/** Samples the peak RSS of processes while `work` runs. */
export async function peakRss<T>(pids: Array<number | undefined>, work: () => Promise<T>): Promise<{ value: T; peaks: number[]; before: number[] }> {
  const before = pids.map(rssMb);
  const peaks = [...before];
  const timer = setInterval(() => pids.forEach((pid, i) => (peaks[i] = Math.max(peaks[i] ?? 0, rssMb(pid)))), 50);
  try {
    const value = await work();
    return { value, peaks, before };
  } finally {
    clearInterval(timer);
  }
}
