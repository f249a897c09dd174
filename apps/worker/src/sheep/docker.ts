import Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import type { Logger } from 'pino';
import type { DockerSheepConfig, ShepherdConfig } from '@shepherd/config';
import { modelKey, type Model } from '@shepherd/contracts';
import { RunnerStartError, type RunnerExit } from '../errors';
import { gpuIds } from './bare';
import { OutputTail } from './output-tail';
import type { PreparedRunner, RunnerHost, StartedRunner } from './runner-host';

/** The port the runner binds inside its container, as in the original. */
export const CONTAINER_PORT = '9999/tcp';
export const LABELS = { shepherd: 'shepherd', sheep: 'shepherd.sheep', deployment: 'shepherd.deployment', model: 'shepherd.model' } as const;

export interface DockerHostOptions {
  sheepId: string;
  /**
   * Names this deployment on a shared Docker engine (its Redis prefix): the
   * containers carry it, and the start-up cleanup removes only its own.
   */
  deployment: string;
  config: DockerSheepConfig;
  registry: ShepherdConfig['registry'];
  /** Bind-mounted at the same path, so `io_data_root` means the same inside. */
  dataRoot: string;
  log: Logger;
  docker?: Docker;
}

/**
 * Runs each model as a container of `<registry>/<name>:<version>` with
 * dockerode: pulled when missing (or always), port 9999 published on the
 * sheep's port, the data root mounted, GPUs as a device request, an init
 * as PID 1 (so the runner gets SIGTERM), labelled with the sheep and the
 * deployment so a restarted worker finds and removes its own leftovers. A
 * dying container is noticed from Docker's event stream.
 */
export class DockerRunnerHost implements RunnerHost {
  private readonly docker: Docker;

  constructor(private readonly options: DockerHostOptions) {
    this.docker = options.docker ?? new Docker();
  }

  image(model: Model): string {
    const registry = this.options.registry?.url.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    return `${registry ? `${registry}/` : ''}${model.name}:${model.version}`;
  }

  /** Removes containers of this sheep and deployment left by a crashed worker: found by label, never by port. */
  async cleanup(): Promise<void> {
    const { sheepId, deployment } = this.options;
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.sheep}=${sheepId}`, `${LABELS.deployment}=${deployment}`] },
    });
    for (const info of containers) {
      this.options.log.warn({ container: info.Id, image: info.Image }, 'removing a container left by an earlier worker');
      await this.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
    }
  }

  /** Pulls the image if needed and creates the container; the runner in use keeps running meanwhile. */
  async prepare(model: Model): Promise<PreparedRunner> {
    const image = this.image(model);
    await this.pullIfNeeded(image);
    const container = await this.create(model, image);
    let used = false;
    return {
      start: () => {
        used = true;
        return this.run(container, image);
      },
      discard: async () => {
        if (!used) await container.remove({ force: true }).catch(() => undefined);
      },
    };
  }

  async start(model: Model): Promise<StartedRunner> {
    return (await this.prepare(model)).start();
  }

  private async run(container: Docker.Container, image: string): Promise<StartedRunner> {
    const { died } = await this.watchDeath(container);
    const stdoutTail = new PassThrough();
    const stderrTail = new PassThrough();
    new OutputTail(stdoutTail, this.options.config.stdoutFile, 0);
    const stderr = new OutputTail(stderrTail, this.options.config.stderrFile);
    try {
      await container.start();
    } catch (error) {
      await container.remove({ force: true }).catch(() => undefined);
      throw new RunnerStartError(`Docker could not start ${image}: ${engineMessage(error)}`);
    }
    const logs = (await container.logs({ follow: true, stdout: true, stderr: true })) as unknown as NodeJS.ReadableStream;
    this.docker.modem.demuxStream(logs, stdoutTail, stderrTail);
    logs.on('end', () => {
      stdoutTail.end();
      stderrTail.end();
    });
    const exited = died.then(async (code) => {
      await new Promise((resolve) => setTimeout(resolve, 100)); // let the last log lines arrive
      return { code, signal: null, stderrTail: stderr.text() } satisfies RunnerExit;
    });
    return {
      host: '127.0.0.1',
      port: this.options.config.port,
      exited,
      stop: () => this.stop(container, died),
    };
  }

  /**
   * `docker stop` (the image's stop signal) and a kill once the sheep's
   * stop_timeout has passed: done here, since the engine's own timeout
   * counts whole seconds only.
   */
  private async stop(container: Docker.Container, died: Promise<number | null>): Promise<void> {
    const graceMs = this.options.config.stopTimeoutMs;
    const stopping = container.stop({ t: Math.ceil(graceMs / 1000) }).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([died.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(resolve, graceMs, false)))]);
    clearTimeout(timer);
    if (!ended) await container.kill({ signal: 'SIGKILL' }).catch(() => undefined);
    await Promise.all([died, stopping]);
    if (!this.options.config.autoremoveContainers) await container.remove({ force: true }).catch(() => undefined);
  }

  private async create(model: Model, image: string): Promise<Docker.Container> {
    const { config, sheepId, deployment, dataRoot } = this.options;
    const env = Object.entries(config.env).map(([key, value]) => `${key}=${value}`);
    const ids = gpuIds(config.devices);
    if (ids.length > 0) env.push(`NVIDIA_VISIBLE_DEVICES=${ids.join(',')}`);
    try {
      return await this.docker.createContainer({
        Image: image,
        Env: env,
        Labels: { [LABELS.shepherd]: 'true', [LABELS.sheep]: sheepId, [LABELS.deployment]: deployment, [LABELS.model]: modelKey(model) },
        ExposedPorts: { [CONTAINER_PORT]: {} },
        // For a `docker stop` from outside: the same grace, in the whole seconds Docker counts.
        StopTimeout: Math.ceil(config.stopTimeoutMs / 1000),
        HostConfig: containerHostConfig(config, dataRoot, ids),
      });
    } catch (error) {
      throw new RunnerStartError(`Docker could not create a container of ${image}: ${engineMessage(error)}`);
    }
  }

  private async pullIfNeeded(image: string): Promise<void> {
    if (this.options.config.pull === 'missing') {
      const present = await this.docker
        .getImage(image)
        .inspect()
        .then(() => true, () => false);
      if (present) return;
    }
    const { registry, log } = this.options;
    const authconfig =
      registry?.username !== undefined
        ? { username: registry.username, password: registry.password ?? '', serveraddress: image.split('/')[0] }
        : undefined;
    log.info({ image }, 'pulling image');
    try {
      const stream = await this.docker.pull(image, authconfig ? { authconfig } : {});
      await new Promise<void>((resolve, reject) => {
        // A failed pull often arrives as an `error` inside the progress events.
        this.docker.modem.followProgress(
          stream,
          (error: Error | null, events: Array<{ error?: string }>) => {
            const inner = events?.find((event) => event.error)?.error;
            if (error || inner) reject(new Error(inner ?? error?.message));
            else resolve();
          },
          (event: { status?: string; progress?: string; id?: string }) => log.debug({ image, ...event }, 'pull progress'),
        );
      });
    } catch (error) {
      throw new RunnerStartError(`Could not pull ${image}: ${pullProblem(engineMessage(error))}`);
    }
    log.info({ image }, 'image pulled');
  }

  /**
   * Subscribes to the container's `die` event before it starts, so even an
   * instant crash is seen; resolves with the exit code.
   */
  private async watchDeath(container: Docker.Container): Promise<{ died: Promise<number | null> }> {
    const events = (await this.docker.getEvents({ filters: { container: [container.id], event: ['die'] } })) as NodeJS.ReadableStream & {
      destroy(): void;
    };
    const died = new Promise<number | null>((resolve) => {
      let settled = false;
      const settle = (code: number | null) => {
        if (settled) return;
        settled = true;
        events.destroy();
        resolve(code);
      };
      events.on('data', (chunk: Buffer) => {
        const event = JSON.parse(chunk.toString()) as { Actor?: { Attributes?: { exitCode?: string } } };
        const code = event.Actor?.Attributes?.exitCode;
        settle(code === undefined ? null : Number(code));
      });
      // The stream broke (dockerd restarted): ask the engine instead.
      const ask = () =>
        void container.inspect().then(
          (info) => (info.State.Running ? undefined : settle(info.State.ExitCode)),
          () => settle(null),
        );
      events.on('error', ask);
      events.on('end', ask);
    });
    return { died };
  }
}

export function containerHostConfig(config: DockerSheepConfig, dataRoot: string, deviceIds: string[]): Docker.HostConfig {
  return {
    PortBindings: { [CONTAINER_PORT]: [{ HostIp: '127.0.0.1', HostPort: String(config.port) }] },
    Binds: [`${dataRoot}:${dataRoot}`],
    AutoRemove: config.autoremoveContainers,
    // Docker's tini as PID 1: forwards SIGTERM to the runner and reaps its children.
    Init: true,
    Privileged: false,
    ...(config.memory ? { Memory: config.memory } : {}),
    ...(config.cpus ? { NanoCpus: Math.round(config.cpus * 1e9) } : {}),
    ...(config.networkMode ? { NetworkMode: config.networkMode } : {}),
    ...(deviceIds.length > 0 ? { DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: deviceIds, Capabilities: [['gpu']] }] } : {}),
  };
}

function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: string } }).json;
  return json?.message ?? (error as Error).message ?? String(error);
}

/** Says which of the usual pull failures it was, then the engine's own words. */
function pullProblem(message: string): string {
  if (/unauthorized|authentication required|no basic auth credentials|denied/i.test(message)) return `unauthorized (check registry.username and registry.password): ${message}`;
  if (/not found|manifest unknown|does not exist/i.test(message)) return `no such image in the registry: ${message}`;
  if (/connection refused|no such host|timeout|dial tcp|EOF/i.test(message)) return `registry unreachable: ${message}`;
  return message;
}
