import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import yaml from 'js-yaml';
import { beforeAll } from '@jest/globals';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { loadConfig, type ShepherdConfig } from '@shepherd/config';
import { createGateway } from '@shepherd/gateway';
import { createRedis, RedisKeys, SheepRegistry, type SheepState } from '@shepherd/queue';
import { deleteKeys, freePort, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import type { Redis } from 'ioredis';

export const REPO = resolve(__dirname, '../../..');
export const MODELS = join(REPO, 'examples/models');
/** Built files of the workspace packages this one depends on (turbo builds them before the tests). */
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
export const RUNNER_CLI = join(packageDir('@shepherd/runner'), 'dist/cli.js');
export const WORKER_MAIN = join(packageDir('@shepherd/worker'), 'dist/main.js');
export const GATEWAY_CLI = join(packageDir('@shepherd/gateway'), 'dist/cli.js');

/** A bare sheep running the TypeScript echo runner from examples/models. */
export function echoSheep(port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'bare',
    port,
    working_directory: MODELS,
    command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'],
    ...extra,
  };
}

export interface Stack {
  url: string;
  config: ShepherdConfig;
  configPath: string;
  dir: string;
  redis: Redis;
  workers: Map<string, ChildProcess>;
  /** `config` overrides keys of this worker's own copy of the config (a second machine: its own data_root). */
  startWorker(sheepId: string, config?: Record<string, unknown>): ChildProcess;
  stopWorker(sheepId: string, signal?: NodeJS.Signals): Promise<void>;
  sheepState(sheepId: string): Promise<SheepState | null>;
  /** Stops the gateway (as on SIGTERM) and starts a new one on the same port. */
  restartGateway(): Promise<void>;
  submit(body: Record<string, unknown>): Promise<Response>;
  waitReady(jobId: string): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * The gateway in this process and one real worker process per sheep, on a
 * fresh Redis prefix, a temp data root and filesystem storage (unless the
 * raw config says otherwise). Short heartbeats and locks keep tests quick.
 */
export async function startStack(raw: Record<string, unknown>, options: { startWorkers?: boolean } = {}): Promise<Stack> {
  const dir = tempDir('shepherd-stack');
  const prefix = uniqueId('wtest');
  const configPath = join(dir, 'shepherd.yml');
  const document = {
    data_root: join(dir, 'data'),
    storage: { backend: 'filesystem', root: join(dir, 'storage') },
    redis: { url: REDIS_URL, prefix },
    worker: { heartbeat: '300ms', lock_duration: '2s', poll_interval: '200ms', stop_timeout: '2s', shutdown_grace: '10s', start_timeout: '20s' },
    ...raw,
  };
  writeFileSync(configPath, yaml.dump(document));
  const config = loadConfig(configPath);
  const silent = new Writable({ write: (_c, _e, done) => done() });
  let app: NestExpressApplication = await createGateway(config, { logDestination: silent });
  await app.listen(0, '127.0.0.1');
  const gatewayPort = (app.getHttpServer().address() as { port: number }).port;
  const url = `http://127.0.0.1:${gatewayPort}`;
  const redis = createRedis(config.redis.url, 'worker');
  const registry = new SheepRegistry(redis, new RedisKeys(prefix));
  const workers = new Map<string, ChildProcess>();

  const stack: Stack = {
    url,
    config,
    configPath,
    dir,
    redis,
    workers,
    startWorker(sheepId, overrides) {
      let path = configPath;
      if (overrides) {
        path = join(dir, `${sheepId}-${uniqueId('cfg')}.yml`);
        writeFileSync(path, yaml.dump({ ...document, ...overrides }));
      }
      const child = spawn(process.execPath, [WORKER_MAIN, '-c', path, '--sheep', sheepId], {
        env: { ...process.env }, // Jest gives each test file its own process.env
        stdio: process.env.SHOW_WORKER_LOGS ? ['ignore', 'inherit', 'inherit'] : 'ignore',
      });
      workers.set(sheepId, child);
      return child;
    },
    async stopWorker(sheepId, signal = 'SIGTERM') {
      const child = workers.get(sheepId);
      workers.delete(sheepId);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
    async restartGateway() {
      await app.close();
      app = await createGateway(config, { logDestination: silent });
      await app.listen(gatewayPort, '127.0.0.1');
    },
    sheepState: async (sheepId) => (await registry.read([sheepId])).get(sheepId) ?? null,
    submit: (body) =>
      fetch(`${url}/start-job`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    waitReady: async (jobId) => (await fetch(`${url}/jobs/${jobId}/wait_ready?timeout=60`)).json(),
    async close() {
      await Promise.all([...workers.keys()].map((id) => stack.stopWorker(id, 'SIGKILL')));
      await app.close();
      redis.disconnect();
      await deleteKeys(`${prefix}:`);
    },
  };
  if (options.startWorkers !== false) {
    for (const sheepId of Object.keys(config.sheep)) stack.startWorker(sheepId);
    await waitFor(async () => {
      for (const sheepId of Object.keys(config.sheep)) if (!(await stack.sheepState(sheepId))) return false;
      return true;
    }, 20_000, 'the workers to beat');
  }
  return stack;
}

export const echo = (version = 'v1') => ({ name: 'echo', version });

/** Free ports for this test file's runners, taken when the file starts: `port(0)`, `port(1)`, ... */
export function useFreePorts(count: number): (index: number) => number {
  const ports: number[] = [];
  beforeAll(async () => {
    for (let i = 0; i < count; i++) ports.push(await freePort());
  });
  return (index) => ports[index] as number;
}
