import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { freePort, startRedisServer, waitFor, type RedisServerHandle } from '@shepherd/testing';
import { GATEWAY_CLI, RUNNER_CLI, WORKER_MAIN } from './harness';

/**
 * Every part of Shepherd as its own process, so the chaos test can kill any
 * of them: a private Redis with an fsynced append-only file, the gateway
 * (its CLI), one worker per sheep and, under each worker, its runner. Logs
 * of all of them go to `<dir>/logs`.
 */
export interface ChaosStack {
  url: string;
  dir: string;
  sheepIds: string[];
  /** One line `<job id> <runner pid>` each time a runner starts a job. */
  executionsLog: string;
  /** Exits nobody asked for (a crash), counted per process kind; the supervisor restarts them as a service manager would. */
  unexpectedExits: { gateway: number; worker: number };
  killWorker(sheepId: string): Promise<void>;
  startWorker(sheepId: string): void;
  /** SIGKILLs the runner under this sheep's worker; false when it has none right now. */
  killRunner(sheepId: string): boolean;
  stopGateway(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  startGateway(): Promise<void>;
  killRedis(): Promise<void>;
  startRedis(): Promise<void>;
  close(): Promise<void>;
}

export interface ChaosStackOptions {
  dir: string;
  sheepCount: number;
}

/** The example echo runner, plus a line in the executions log each time it starts a job. */
function writeCountingModel(dir: string, executionsLog: string): string {
  const models = join(dir, 'models');
  mkdirSync(join(models, 'echo', 'v1'), { recursive: true });
  const runner = join(dir, 'counting-echo-runner.js');
  writeFileSync(
    runner,
    [
      "const { appendFileSync } = require('node:fs');",
      `const Echo = require(${JSON.stringify(require.resolve('@shepherd/example-echo-runner'))}).default;`,
      'class CountingEcho extends Echo {',
      '  processJob(inputDir, outputDir, jobId) {',
      `    appendFileSync(${JSON.stringify(executionsLog)}, jobId + ' ' + process.pid + '\\n');`,
      '    return super.processJob(inputDir, outputDir, jobId);',
      '  }',
      '}',
      'module.exports = { default: CountingEcho };',
      '',
    ].join('\n'),
  );
  writeFileSync(join(models, 'echo', 'v1', 'config.yaml'), yaml.dump({ runner, model: { name: 'echo', version: 'v1' } }));
  return models;
}

function exited(child: ChildProcess | undefined): boolean {
  return !child || child.exitCode !== null || child.signalCode !== null;
}

async function kill(child: ChildProcess | undefined, signal: NodeJS.Signals, forceAfterMs = 15_000): Promise<void> {
  if (!child || exited(child)) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const force = setTimeout(() => child.kill('SIGKILL'), forceAfterMs);
  await gone;
  clearTimeout(force);
}

export async function startChaosStack({ dir, sheepCount }: ChaosStackOptions): Promise<ChaosStack> {
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const executionsLog = join(dir, 'executions.log');
  writeFileSync(executionsLog, '');
  const models = writeCountingModel(dir, executionsLog);
  mkdirSync(join(dir, 'redis'));
  const redis: RedisServerHandle = await startRedisServer(undefined, { aofDir: join(dir, 'redis') });
  const gatewayPort = await freePort();
  const sheep: Record<string, unknown> = {};
  for (let i = 1; i <= sheepCount; i++) {
    sheep[`s${i}`] = {
      type: 'bare',
      port: await freePort(),
      working_directory: models,
      command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'],
    };
  }
  const configPath = join(dir, 'shepherd.yml');
  writeFileSync(
    configPath,
    yaml.dump({
      data_root: join(dir, 'data'),
      storage: { backend: 'filesystem', root: join(dir, 'storage') },
      redis: { url: redis.url, prefix: 'chaos' },
      gateway: { host: '127.0.0.1', port: gatewayPort, shutdown_grace: '2s', submit_lease: '2s', reconcile_interval: '1s' },
      worker: {
        heartbeat: '500ms',
        lock_duration: '3s',
        poll_interval: '200ms',
        stop_timeout: '1s',
        shutdown_grace: '5s',
        start_timeout: '20s',
        // Our kills are not the job's fault: a job the chaos hits three times must not fail for it.
        max_attempts: 20,
        hand_back_delay: '200ms',
      },
      sheep,
    }),
  );

  const url = `http://127.0.0.1:${gatewayPort}`;
  const unexpectedExits = { gateway: 0, worker: 0 };
  let closing = false;
  let gateway: ChildProcess | undefined;
  const workers = new Map<string, ChildProcess>();
  /** Processes the test itself is stopping: their exit is expected. */
  const stopping = new Set<ChildProcess>();

  /** Spawns with stdout and stderr appended to `logs/<name>.log`; restarts it if it exits on its own. */
  function spawnLogged(name: string, args: string[], onUnexpectedExit: () => void): ChildProcess {
    const fd = openSync(join(logs, `${name}.log`), 'a');
    const child = spawn(process.execPath, args, { env: { ...process.env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.once('exit', () => {
      if (closing || stopping.delete(child)) return;
      onUnexpectedExit();
    });
    return child;
  }

  function startWorker(sheepId: string): void {
    workers.set(
      sheepId,
      spawnLogged(sheepId, [WORKER_MAIN, '-c', configPath, '--sheep', sheepId], () => {
        unexpectedExits.worker += 1;
        setTimeout(() => !closing && startWorker(sheepId), 500);
      }),
    );
  }

  async function startGateway(): Promise<void> {
    gateway = spawnLogged('gateway', [GATEWAY_CLI, '-c', configPath, '-h', '127.0.0.1', '-p', String(gatewayPort)], () => {
      unexpectedExits.gateway += 1;
      setTimeout(() => !closing && startGateway().catch(() => undefined), 500);
    });
    await waitFor(async () => (await fetch(`${url}/health`).catch(() => null))?.status === 200, 30_000, 'the gateway to listen');
  }

  async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
    if (!child || exited(child)) return;
    stopping.add(child);
    await kill(child, signal);
  }

  const sheepIds = Object.keys(sheep);
  const stack: ChaosStack = {
    url,
    dir,
    sheepIds,
    executionsLog,
    unexpectedExits,
    startWorker,
    killWorker: (sheepId) => stopProcess(workers.get(sheepId), 'SIGKILL'),
    killRunner(sheepId) {
      const pid = runnerPid(workers.get(sheepId));
      if (pid === undefined) return false;
      try {
        process.kill(pid, 'SIGKILL');
        return true;
      } catch {
        return false; // ended meanwhile
      }
    },
    startGateway,
    stopGateway: (signal) => stopProcess(gateway, signal),
    killRedis: () => redis.stop(),
    startRedis: () => redis.start(),
    async close() {
      closing = true;
      const runners = [...workers.values()].map(runnerPid);
      await Promise.all([...workers.values()].map((child) => kill(child, 'SIGKILL')));
      // pdeathsig takes the runners with their workers; this is for a machine without setpriv.
      for (const pid of runners) if (pid !== undefined) tryKill(pid);
      await kill(gateway, 'SIGKILL');
      await redis.stop();
    },
  };
  try {
    await startGateway();
    for (const sheepId of sheepIds) startWorker(sheepId);
    await waitFor(
      async () => {
        const answer = await fetch(`${url}/ready`).catch(() => null);
        const body = answer?.status === 200 ? ((await answer.json()) as { sheep: Record<string, boolean> }) : undefined;
        return body !== undefined && sheepIds.every((id) => body.sheep[id]);
      },
      30_000,
      'the gateway to see Redis, storage and both workers',
    );
  } catch (error) {
    await stack.close();
    throw error;
  }
  return stack;
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The runner is the worker's child process whose command line is the runner CLI. */
function runnerPid(worker: ChildProcess | undefined): number | undefined {
  if (!worker?.pid || exited(worker)) return undefined;
  let children: number[];
  try {
    children = execFileSync('pgrep', ['-P', String(worker.pid)]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return undefined; // pgrep exits 1 when nothing matches
  }
  return children.find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(RUNNER_CLI);
    } catch {
      return false;
    }
  });
}
