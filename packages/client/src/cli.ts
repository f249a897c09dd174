#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { BadRequestError, createNodeClient, fileInput, JobFailedError, saveResult, type JobInput, type JobStatus, type ShepherdClient } from './node';
import { ProgressView } from './progress';

const USAGE = `Usage: shepherd-client [--url URL] [--token TOKEN] COMMAND [options]

Commands:
  submit --model NAME:VERSION (--input [NAME=]FILE... | --payload STRING)
         [--job-id ID] [--priority N] [--sheep ID] [--job-timeout S] [--queue-timeout S]
         [--wait [--timeout S]] [--out DIR [--file NAME]...]
  status JOB_ID
  wait JOB_ID [--timeout S] [--out DIR [--file NAME]...]
  events JOB_ID [--last-event-id ID]
  result JOB_ID [--out DIR] [--file NAME]...     (without --out: the file to stdout)
  cancel JOB_ID
  list [--status S] [--model M] [--sheep ID] [--limit N] [--all] [--json]

--url defaults to $SHEPHERD_URL or http://127.0.0.1:5000, --token to $SHEPHERD_TOKEN.
One --input without a name is uploaded as inputs/input, several as inputs/<base name>.
Exit codes: 0 done (or the command did its work), 1 the job failed or was cancelled,
2 usage error (also a request the gateway refused with 400), 3 server or network error,
4 the job had not finished within --timeout.`;

const OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  model: { type: 'string' },
  input: { type: 'string', multiple: true },
  payload: { type: 'string' },
  'job-id': { type: 'string' },
  priority: { type: 'string' },
  sheep: { type: 'string' },
  'job-timeout': { type: 'string' },
  'queue-timeout': { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  out: { type: 'string' },
  file: { type: 'string', multiple: true },
  'last-event-id': { type: 'string' },
  status: { type: 'string' },
  limit: { type: 'string' },
  all: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

class UsageError extends Error {}

const EXIT = { done: 0, failed: 1, usage: 2, server: 3, unfinished: 4 } as const;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? EXIT.done : EXIT.usage;
  }
  const client = createNodeClient({
    url: values.url ?? process.env.SHEPHERD_URL ?? 'http://127.0.0.1:5000',
    token: values.token ?? (process.env.SHEPHERD_TOKEN || undefined),
  });
  const view = new ProgressView(process.stderr, Boolean(process.stderr.isTTY));
  switch (command) {
    case 'submit':
      return submit(client, view, values, rest);
    case 'status':
      printJson(await client.status(jobIdOf(rest)));
      return EXIT.done;
    case 'wait':
      return waitFor(client, view, values, jobIdOf(rest));
    case 'events':
      return events(client, values, jobIdOf(rest));
    case 'result':
      return result(client, view, values, jobIdOf(rest));
    case 'cancel':
      await client.cancel(jobIdOf(rest));
      view.line(`${rest[0]} cancelled`);
      return EXIT.done;
    case 'list':
      return list(client, values);
    default:
      throw new UsageError(`Unknown command ${JSON.stringify(command)}`);
  }
}

async function submit(client: ShepherdClient, view: ProgressView, values: Values, extra: string[]): Promise<number> {
  if (!values.model) throw new UsageError('submit needs --model NAME:VERSION');
  // `--input a b c`: the files after the first come as positionals.
  const files = [...(values.input ?? []), ...extra];
  if (files.length > 0 && values.payload !== undefined) throw new UsageError('give --input or --payload, not both');
  if (files.length === 0 && values.payload === undefined) throw new UsageError('submit needs --input FILE or --payload STRING');
  const inputs: JobInput[] = [];
  for (const spec of files) inputs.push(await inputOf(spec, files.length === 1));
  const jobId = await client.submit(
    {
      job_id: values['job-id'],
      model: values.model,
      payload: values.payload,
      inputs,
      priority: numberOf(values.priority, '--priority'),
      sheep_id: values.sheep,
      timeout: numberOf(values['job-timeout'], '--job-timeout'),
      queue_timeout: numberOf(values['queue-timeout'], '--queue-timeout'),
    },
    { onProgress: view.transfer },
  );
  view.finish();
  process.stdout.write(`${jobId}\n`);
  if (!values.wait && !values.out) return EXIT.done;
  return waitFor(client, view, values, jobId);
}

/** `[NAME=]FILE`: a name only when the whole argument is not itself a file. */
async function inputOf(spec: string, only: boolean): Promise<JobInput> {
  const eq = spec.indexOf('=');
  if (eq > 0 && !existsSync(spec)) return fileInput(spec.slice(eq + 1), spec.slice(0, eq));
  if (!existsSync(spec)) throw new UsageError(`No such input file: ${spec}`);
  return fileInput(spec, only ? 'input' : basename(spec));
}

async function waitFor(client: ShepherdClient, view: ProgressView, values: Values, jobId: string): Promise<number> {
  const timeout = numberOf(values.timeout, '--timeout');
  const status = await client.wait(jobId, { timeoutMs: timeout !== undefined ? timeout * 1000 : undefined, onEvent: view.job });
  view.finish();
  printJson(status);
  return finalCode(client, view, values, jobId, status);
}

async function finalCode(client: ShepherdClient, view: ProgressView, values: Values, jobId: string, status: JobStatus): Promise<number> {
  if (status.status === 'failed' || status.status === 'cancelled') {
    view.line(`${jobId} ${status.status}${status.error_details ? `: ${status.error_details.message}` : ''}`);
    return EXIT.failed;
  }
  if (status.status !== 'done') {
    view.line(`${jobId} is ${status.status}: not finished within --timeout`);
    return EXIT.unfinished;
  }
  if (values.out) {
    const saved = await saveResult(client, jobId, values.out, { files: values.file, onProgress: view.transfer });
    view.finish();
    for (const path of saved) view.line(`saved ${path}`);
  }
  return EXIT.done;
}

async function events(client: ShepherdClient, values: Values, jobId: string): Promise<number> {
  let last: JobStatus | undefined;
  for await (const event of client.events(jobId, { lastEventId: values['last-event-id'] })) {
    process.stdout.write(`${JSON.stringify({ id: event.id, event: event.type, ...event.status })}\n`);
    last = event.status;
  }
  return last?.status === 'done' ? EXIT.done : EXIT.failed;
}

async function result(client: ShepherdClient, view: ProgressView, values: Values, jobId: string): Promise<number> {
  if (values.out) {
    const saved = await saveResult(client, jobId, values.out, { files: values.file, onProgress: view.transfer });
    view.finish();
    for (const path of saved) view.line(`saved ${path}`);
    return EXIT.done;
  }
  if ((values.file?.length ?? 0) > 1) throw new UsageError('several --file need --out DIR');
  const download = await client.result(jobId, values.file?.[0]);
  await toStdout(download.body);
  return EXIT.done;
}

async function toStdout(body: ReadableStream<Uint8Array>): Promise<void> {
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
  }
}

async function list(client: ShepherdClient, values: Values): Promise<number> {
  const query = {
    status: values.status as JobStatus['status'] | undefined,
    model: values.model,
    sheep: values.sheep,
    limit: numberOf(values.limit, '--limit'),
  };
  if (!values.all) {
    const page = await client.list(query);
    if (values.json) printJson(page);
    else for (const job of page.jobs) printRow(job);
    return EXIT.done;
  }
  for await (const job of client.listAll(query)) {
    if (values.json) printJson(job);
    else printRow(job);
  }
  return EXIT.done;
}

function printRow(job: JobStatus & { job_id: string }): void {
  const model = `${job.model.name}:${job.model.version}`;
  process.stdout.write(`${[job.job_id, job.status, model, job.sheep_id ?? '-', job.enqueued_at ?? '-', job.finished_at ?? '-'].join('\t')}\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function jobIdOf(rest: string[]): string {
  if (rest.length !== 1 || !rest[0]) throw new UsageError('expected one JOB_ID');
  return rest[0];
}

function numberOf(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) throw new UsageError(`${name}: expected a number, got ${JSON.stringify(value)}`);
  return number;
}

/** The exit code for an error, and a line on stderr that says what happened. */
function reportError(error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`shepherd-client: ${message}\n`);
  if (error instanceof UsageError || error instanceof BadRequestError || error instanceof TypeError) {
    if (error instanceof UsageError) process.stderr.write('Run shepherd-client --help for the usage.\n');
    return EXIT.usage;
  }
  if (error instanceof JobFailedError) return EXIT.failed;
  return EXIT.server; // any other answer of the gateway, or none (network)
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error: unknown) => (process.exitCode = reportError(error)),
);
