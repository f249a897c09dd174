import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import type { BareSheepConfig } from '@shepherd/config';
import type { Model } from '@shepherd/contracts';
import { RunnerStartError, type RunnerExit } from '../errors';
import { OutputTail } from './output-tail';
import type { PreparedRunner, RunnerHost, StartedRunner } from './runner-host';

export const DEFAULT_COMMAND = ['shepherd-runner', '-p', '{port}', '{config_path}'];

/** `setpriv --pdeathsig` makes the kernel kill the runner when its worker dies, even by SIGKILL. */
const SETPRIV = spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0 ? 'setpriv' : undefined;

/**
 * `shepherd-runner` is whatever PATH has (an original installed with pip
 * wins); without one, ours from @shepherd/runner runs on this Node.
 */
function resolveProgram(program: string): string[] {
  if (program !== 'shepherd-runner' || onPath(program)) return [program];
  return [process.execPath, join(dirname(require.resolve('@shepherd/runner/package.json')), 'dist/cli.js')];
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface BareHostOptions {
  sheepId: string;
  config: BareSheepConfig;
  /** SIGTERM to SIGKILL when the sheep sets no `stop_timeout` (`worker.stop_timeout`). */
  stopTimeoutMs: number;
}

/** Runs the runner as a child process in the sheep's working directory. */
export class BareRunnerHost implements RunnerHost {
  constructor(private readonly options: BareHostOptions) {}

  async cleanup(): Promise<void> {
    // Children die with their worker (pdeathsig): nothing can be left over.
  }

  /** Checks the model's config exists and builds the command; nothing runs yet. */
  async prepare(model: Model): Promise<PreparedRunner> {
    const { config } = this.options;
    const workingDirectory = resolve(config.workingDirectory);
    const configPath = join(model.name, model.version, 'config.yaml');
    const command = (config.command ?? DEFAULT_COMMAND).map((arg) =>
      arg
        .replaceAll('{port}', String(config.port))
        .replaceAll('{model_name}', model.name)
        .replaceAll('{model_version}', model.version)
        .replaceAll('{config_path}', configPath),
    );
    const usesConfig = (config.command ?? DEFAULT_COMMAND).some((arg) => arg.includes('{config_path}'));
    if (usesConfig && !existsSync(join(workingDirectory, configPath))) {
      throw new RunnerStartError(`Model ${model.name}:${model.version} has no config: ${join(workingDirectory, configPath)} does not exist`);
    }
    return { start: async () => this.spawn(command as [string, ...string[]], workingDirectory), discard: async () => undefined };
  }

  async start(model: Model): Promise<StartedRunner> {
    return (await this.prepare(model)).start();
  }

  private spawn([first, ...rest]: [string, ...string[]], workingDirectory: string): StartedRunner {
    const { config } = this.options;
    const [program, ...args] = [...resolveProgram(first), ...rest] as [string, ...string[]];
    const child = spawn(SETPRIV ?? program, SETPRIV ? ['--pdeathsig', 'SIGKILL', '--', program, ...args] : args, {
      cwd: workingDirectory,
      env: this.environment(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so stop() reaches the runner's children too
    });
    const stdout = new OutputTail(child.stdout as NonNullable<typeof child.stdout>, config.stdoutFile, 0);
    const stderr = new OutputTail(child.stderr as NonNullable<typeof child.stderr>, config.stderrFile);
    void stdout;
    const exited = new Promise<RunnerExit>((resolveExit) => {
      child.once('error', (error) => resolveExit({ code: null, signal: null, stderrTail: `${error.message}\n${stderr.text()}` }));
      child.once('close', (code, signal) => resolveExit({ code, signal, stderrTail: stderr.text() }));
    });
    return {
      host: '127.0.0.1',
      port: config.port,
      exited,
      stop: () => this.stop(child, exited),
    };
  }

  private environment(): NodeJS.ProcessEnv {
    const { config } = this.options;
    const env: NodeJS.ProcessEnv = { ...process.env, ...config.env };
    if (config.devices.length > 0) env.CUDA_VISIBLE_DEVICES = cudaDevices(config.devices);
    return env;
  }

  private async stop(child: ChildProcess, exited: Promise<RunnerExit>): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    signalGroup(child, 'SIGTERM');
    const graceMs = this.options.config.stopTimeoutMs ?? this.options.stopTimeoutMs;
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** `/dev/nvidia0` → `0`; anything else is passed as it is (`GPU-<uuid>`, `1`). */
export function gpuIds(devices: string[]): string[] {
  return devices.map((device) => /^\/dev\/nvidia(\d+)$/.exec(device)?.[1] ?? device);
}

export function cudaDevices(devices: string[]): string {
  return gpuIds(devices).join(',');
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}
