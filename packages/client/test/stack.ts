// A real Shepherd for the client's tests, after tests/system/test/harness.ts:
// the gateway in this process (createGateway), one bare sheep worker process
// running the example echo runner, the local Redis under a fresh prefix,
// filesystem storage in a temp directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { loadConfig, type ShepherdConfig } from '@shepherd/config';
import { createGateway } from '@shepherd/gateway';
import { deleteKeys, freePort, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';

const REPO = resolve(__dirname, '../../..');
const MODELS = join(REPO, 'examples/models');
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
const RUNNER_CLI = join(packageDir('@shepherd/runner'), 'dist/cli.js');
const WORKER_MAIN = join(packageDir('@shepherd/worker'), 'dist/main.js');
export const CLIENT_CLI = resolve(__dirname, '../dist/cli.js');

export interface Stack {
  url: string;
  config: ShepherdConfig;
  dir: string;
  close(): Promise<void>;
}

export interface StackOptions {
  /** Extra top-level config keys (e.g. `auth`). */
  config?: Record<string, unknown>;
  /** Start the sheep's worker (default true). */
  worker?: boolean;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dir = tempDir('shepherd-client');
  const prefix = uniqueId('ctest');
  const configPath = join(dir, 'shepherd.yml');
  const port = await freePort();
  // JSON is YAML: no YAML writer needed.
  const document = {
    data_root: join(dir, 'data'),
    storage: { backend: 'filesystem', root: join(dir, 'storage') },
    redis: { url: REDIS_URL, prefix },
    worker: { heartbeat: '300ms', lock_duration: '2s', poll_interval: '200ms', stop_timeout: '2s', shutdown_grace: '5s', start_timeout: '20s' },
    sheep: {
      s1: { type: 'bare', port, working_directory: MODELS, command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'] },
    },
    ...options.config,
  };
  writeFileSync(configPath, JSON.stringify(document, null, 2));
  const config = loadConfig(configPath);
  const silent = new Writable({ write: (_c, _e, done) => done() });
  const app: NestExpressApplication = await createGateway(config, { logDestination: silent });
  await app.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  let worker: ChildProcess | undefined;
  if (options.worker !== false) {
    worker = spawn(process.execPath, [WORKER_MAIN, '-c', configPath, '--sheep', 's1'], {
      env: { ...process.env },
      stdio: process.env.SHOW_WORKER_LOGS ? ['ignore', 'inherit', 'inherit'] : 'ignore',
    });
    const headers: Record<string, string> = {};
    const token = (options.config?.auth as { tokens?: Array<{ token?: string }> } | undefined)?.tokens?.[0]?.token;
    if (token) headers.authorization = `Bearer ${token}`;
    await waitFor(
      async () => {
        const answer = (await (await fetch(`${url}/status`, { headers })).json()) as { sheep?: Record<string, { running?: boolean }> };
        return answer.sheep?.s1?.running === true;
      },
      20_000,
      'the worker to beat',
    );
  }
  return {
    url,
    config,
    dir,
    async close() {
      if (worker && worker.exitCode === null && worker.signalCode === null) {
        const exited = new Promise((r) => worker?.once('exit', r));
        worker.kill('SIGKILL');
        await exited;
      }
      await app.close();
      await deleteKeys(`${prefix}:`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
