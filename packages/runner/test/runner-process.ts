import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { uniqueId } from '@shepherd/testing';

/** Real runner processes for the tests, each killed by `killAll()`. */

export const REPO_ROOT = resolve(__dirname, '../../..');
export const CLI = join(REPO_ROOT, 'packages/runner/dist/cli.js');
export const ECHO_V1_CONFIG = join(REPO_ROOT, 'examples/models/echo/v1/config.yaml');
export const PYTHON_ECHO_CONFIG = join(REPO_ROOT, 'examples/models/python-echo/v1/config.yaml');
export const PYTHON = '/usr/bin/python3';

const ECHO_SOURCE = join(REPO_ROOT, 'examples/runners/echo/src/echo-runner.ts');
const ECHO_BUILT = join(REPO_ROOT, 'examples/runners/echo/dist/echo-runner.js');

/**
 * The CLI comes from this package's build (turbo's `test` depends on `build`).
 * The echo example is another package that nothing here depends on, so it is
 * compiled here when its output is missing or older than its source.
 */
export function ensureBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build this package first (npx tsc -p tsconfig.build.json)`);
  if (!existsSync(ECHO_BUILT) || statSync(ECHO_BUILT).mtimeMs < statSync(ECHO_SOURCE).mtimeMs) {
    execFileSync(join(REPO_ROOT, 'node_modules/.bin/tsc'), ['-p', 'examples/runners/echo/tsconfig.json'], {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    });
  }
}

/** Whether Debian's python3-zmq is there for the Python runner tests. */
export function pythonZmqAvailable(): boolean {
  return spawnSync(PYTHON, ['-c', 'import zmq'], { stdio: 'ignore' }).status === 0;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunnerProcess {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  exited: Promise<Exit>;
  /** SIGKILL unless it already exited. */
  kill(): Promise<Exit>;
}

const started = new Set<RunnerProcess>();

export function startProcess(command: string, args: string[], env: NodeJS.ProcessEnv = {}): RunnerProcess {
  const child = spawn(command, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<Exit>((resolvePromise) => child.once('exit', (code, signal) => resolvePromise({ code, signal })));
  const handle: RunnerProcess = {
    child,
    output: () => output,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
  started.add(handle);
  void exited.then(() => started.delete(handle));
  return handle;
}

export function startNodeRunner(args: string[]): RunnerProcess {
  return startProcess(process.execPath, [CLI, ...args]);
}

export function startPythonRunner(args: string[]): RunnerProcess {
  const pythonPath = [join(REPO_ROOT, 'packages/runner-python'), join(REPO_ROOT, 'examples/runners/python-echo')];
  return startProcess(PYTHON, ['-m', 'shepherd_runner', ...args], {
    PYTHONPATH: pythonPath.join(':'),
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
  });
}

export async function killAll(): Promise<void> {
  await Promise.all([...started].map((p) => p.kill()));
}

/** Writes `<root>/<job>/inputs/input` (a string as is, anything else as JSON) and an empty outputs/. */
export function makeJob(root: string, input: unknown): string {
  const jobId = uniqueId('job');
  mkdirSync(join(root, jobId, 'inputs'), { recursive: true });
  mkdirSync(join(root, jobId, 'outputs'), { recursive: true });
  writeFileSync(join(root, jobId, 'inputs', 'input'), typeof input === 'string' ? input : JSON.stringify(input));
  return jobId;
}

export function readOutput(root: string, jobId: string, file = 'output'): string {
  return readFileSync(join(root, jobId, 'outputs', file), 'utf8');
}
