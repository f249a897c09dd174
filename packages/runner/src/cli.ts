#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { serveRunner, type BaseRunner } from './base-runner';

const USAGE = 'usage: shepherd-runner [-p PORT] [-s STREAM] [-r RUNNER] CONFIG_PATH';
const DEFAULT_PORT = 9999;
/** Exit code for a wrong command line or config, as Python's argparse uses. */
const EXIT_USAGE = 2;

/** A problem with the command line or the files it names; exits 2 with this message. */
class UsageError extends Error {}

type RunnerClass = new (config: unknown, configPath: string) => BaseRunner;

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let runner: BaseRunner;
  let port: number;
  try {
    const args = parseCommandLine(argv);
    if (args.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    port = args.port;
    const config = readConfig(args.configPath);
    const RunnerClass = loadRunnerClass(args.runner, config, args.configPath);
    runner = new RunnerClass(config, args.configPath);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`shepherd-runner: ${error.message}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  await serveRunner(runner, { port });
  return 0;
}

interface CommandLine {
  help: boolean;
  port: number;
  runner: string | undefined;
  configPath: string;
}

function parseCommandLine(argv: string[]): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        port: { type: 'string', short: 'p' },
        stream: { type: 'string', short: 's' },
        runner: { type: 'string', short: 'r' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true, port: DEFAULT_PORT, runner: undefined, configPath: '' };
  if (positionals.length !== 1 || !positionals[0]) {
    throw new UsageError(`expected one CONFIG_PATH, got ${positionals.length}`);
  }
  if (values.stream !== undefined) {
    process.stderr.write(`shepherd-runner: -s ${values.stream} ignored (the original's emloop stream name)\n`);
  }
  return {
    help: false,
    port: parsePort(values.port),
    runner: values.runner,
    configPath: resolve(positionals[0]),
  };
}

function parsePort(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PORT;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new UsageError(`-p: expected a port 1-65535, got "${value}"`);
  return port;
}

function readConfig(path: string): unknown {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read config file ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  try {
    return yaml.load(source, { filename: path }) ?? {};
  } catch (error) {
    throw new UsageError(`config file ${path} is not valid YAML: ${(error as Error).message}`);
  }
}

/** `-r` is resolved from the working directory; the config's `runner:` key from the config's directory. */
function loadRunnerClass(option: string | undefined, config: unknown, configPath: string): RunnerClass {
  let spec = option;
  let baseDir = process.cwd();
  if (spec === undefined) {
    const key = typeof config === 'object' && config !== null ? (config as Record<string, unknown>).runner : undefined;
    if (typeof key !== 'string' || key === '') {
      throw new UsageError(`no runner: give -r RUNNER or a "runner:" key (a module path) in ${configPath}`);
    }
    spec = key;
    baseDir = dirname(configPath);
  }
  let file: string;
  try {
    const local = spec.startsWith('.') || isAbsolute(spec);
    file = require.resolve(local ? resolve(baseDir, spec) : spec, { paths: [baseDir] });
  } catch {
    throw new UsageError(`cannot find runner module "${spec}" (resolved from ${baseDir})`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the runner is chosen at run time
  const exported = require(file) as Record<string, unknown> | undefined;
  const found = [exported?.default, exported?.Runner, exported].find(isRunnerClass);
  if (!found) {
    throw new UsageError(`${file} exports no runner class (a BaseRunner subclass as default export or "Runner")`);
  }
  return found;
}

function isRunnerClass(value: unknown): value is RunnerClass {
  return typeof value === 'function' && typeof (value.prototype as { processJob?: unknown } | undefined)?.processJob === 'function';
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== 0) process.exit(code);
      // Leave on our own so the last reply can leave; a runner holding timers must not keep us.
      process.exitCode = 0;
      setTimeout(() => process.exit(0), 3000).unref();
    },
    (error: unknown) => {
      process.stderr.write(`shepherd-runner: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
