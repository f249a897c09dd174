import { z } from 'zod';
import { ModelSchema } from '@shepherd/contracts';
import { boolField, durationField, intField, nonEmpty, sizeField } from './fields';

export const SHEEP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const common = {
  /** Host port of the runner's socket (a bare runner binds it; a container publishes 9999 on it). */
  port: intField(1, 65535),
  /** GPU devices such as /dev/nvidia0; sets CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES. */
  devices: z.array(nonEmpty()).default([]),
  /** Runner stdout and stderr are appended here (directories created). */
  stdout_file: nonEmpty().optional(),
  stderr_file: nonEmpty().optional(),
  /** Extra environment for the runner. */
  env: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
};

/** The shared fields, camelCase inside. */
function commonOut(s: { port: number; devices: string[]; stdout_file?: string; stderr_file?: string; env: Record<string, string> }) {
  return { port: s.port, devices: s.devices, stdoutFile: s.stdout_file, stderrFile: s.stderr_file, env: s.env };
}

const BareSheepSchema = z
  .strictObject({
    type: z.literal('bare'),
    ...common,
    /** Directory the runner starts in; holds `<model name>/<version>/config.yaml`. */
    working_directory: nonEmpty(),
    /**
     * The runner command as an argument list, replacing the default
     * `shepherd-runner -p {port} {config_path}`. Placeholders: {port},
     * {model_name}, {model_version}, {config_path}.
     */
    command: z.array(z.string()).min(1).optional(),
    /** SIGTERM to SIGKILL when the runner is stopped (model switch, cancel, shutdown). Default: `worker.stop_timeout`. */
    stop_timeout: durationField().optional(),
  })
  .transform((s) => ({
    type: s.type,
    ...commonOut(s),
    workingDirectory: s.working_directory,
    command: s.command,
    stopTimeoutMs: s.stop_timeout,
  }));

const DockerSheepSchema = z
  .strictObject({
    type: z.literal('docker'),
    ...common,
    /** Remove the container when it stops. Default true. */
    autoremove_containers: boolField().default(true),
    /** `missing` (default): pull only when the image is not local; `always`: pull before every start. */
    pull: z.enum(['missing', 'always']).default('missing'),
    /** Memory limit of the container, e.g. "8gb". */
    memory: sizeField().optional(),
    /** CPU limit of the container, e.g. 2.5. */
    cpus: z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().positive()).optional(),
    network_mode: nonEmpty().optional(),
    /**
     * Grace between the stop signal and the kill when the runner is stopped
     * (model switch, cancel, shutdown). The container runs under an init
     * (Docker's tini), so the runner gets the signal. Default 1 s: a runner that ignores the signal still switches in under 2 s.
     */
    stop_timeout: durationField().default(1000),
  })
  .transform((s) => ({
    type: s.type,
    ...commonOut(s),
    autoremoveContainers: s.autoremove_containers,
    pull: s.pull,
    memory: s.memory,
    cpus: s.cpus,
    networkMode: s.network_mode,
    stopTimeoutMs: s.stop_timeout,
  }));

/** `tcp://host:port`, the form a runner's ROUTER is reached at. */
const RUNNER_ADDRESS = /^tcp:\/\/([^\s:/]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;

/**
 * A runner someone else starts and stops (the runner container beside the
 * worker in a Kubernetes pod): the worker only connects to it and takes
 * jobs of its one model (and jobs pinned to the sheep).
 */
const ExternalSheepSchema = z
  .strictObject({
    type: z.literal('external'),
    /** Where the runner listens, e.g. `tcp://127.0.0.1:9999`. */
    address: z.string().regex(RUNNER_ADDRESS, 'expected tcp://HOST:PORT'),
    /** The one model the runner serves. */
    model: ModelSchema,
  })
  .superRefine((s, ctx) => {
    const port = RUNNER_ADDRESS.exec(s.address)?.[2];
    if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535)) ctx.addIssue({ code: 'custom', path: ['address'], message: 'expected a port from 1 to 65535' });
  })
  .transform((s) => {
    const [, host = '', port = ''] = RUNNER_ADDRESS.exec(s.address) ?? [];
    // `port` is derived so every sheep has one; the runner is not on this machine's port.
    // `devices` is empty: the runner's container holds its GPUs itself.
    return { type: s.type, address: s.address, host, port: Number(port), model: s.model, devices: [] as string[] };
  });

export const SheepSchema = z.discriminatedUnion('type', [BareSheepSchema, DockerSheepSchema, ExternalSheepSchema]);

export type BareSheepConfig = z.output<typeof BareSheepSchema>;
export type DockerSheepConfig = z.output<typeof DockerSheepSchema>;
export type ExternalSheepConfig = z.output<typeof ExternalSheepSchema>;
export type SheepConfig = z.output<typeof SheepSchema>;
