// The original's molotov stress test, re-done on autocannon against a running
// gateway whose sheep run the echo runner. Every HTTP request goes through
// autocannon: each connection is a virtual user that picks a scenario by
// weight and walks its steps through autocannon's `requests` chain
// (setupRequest builds the next step from the last answer; returning nothing
// restarts the chain, i.e. starts the next scenario). Result polls are paced
// by delaying the connection's next send, which autocannon has no option for.
import autocannon from 'autocannon';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { formatMs, formatTable, percentiles, type Percentiles } from './stats';

export interface LoadTestOptions {
  /** Gateway base URL; loopback only. */
  url: string;
  /** The run stops after this long (in-flight scenarios are not counted). */
  durationSeconds: number;
  /** The run stops after this many HTTP requests, all steps counted. */
  maxRequests: number;
  /** Concurrent connections (virtual users); at most `maxRequests`. */
  connections: number;
  /** Asks the echo runner to sleep this long per job (`sleep_ms` in the payload). Default none. */
  runnerSleepMs?: number;
  /** Size of the big-payload scenario's payload in bytes. Default 10 MiB. */
  bigPayloadBytes?: number;
  /** Pause between two result polls of one job, in ms. Default 50. */
  pollIntervalMs?: number;
  /** Result polls before a job counts as an error. Default 1000. */
  maxPolls?: number;
}

export interface ScenarioReport {
  name: string;
  weight: number;
  /** Scenarios begun; those not finished were cut off by the end of the run. */
  started: number;
  /** Scenarios finished, successful or not. */
  count: number;
  /** Scenarios with an unexpected status or body (or no answer). */
  errors: number;
  http5xx: number;
  /** Whole-scenario time of the successful ones. */
  latency: Percentiles;
  firstError?: string;
}

export interface LoadTestReport {
  scenarios: ScenarioReport[];
  requests: number;
  requestsPerSecond: number;
  seconds: number;
  http5xx: number;
  /** Connection errors and timeouts seen by autocannon. */
  connectionErrors: number;
}

type Req = autocannon.Request;
type Outcome = 'next' | 'again' | 'done' | { error: string };
type Job = { id: string; payload: string };
type Step = { request: (job: Job) => Req; check: (status: number, body: string, job: Job) => Outcome };
type Scenario = { name: string; weight: number; steps: Step[] };
/** Per-connection state; autocannon hands a fresh object at every chain restart. */
interface User {
  scenario?: Scenario;
  job?: Job;
  cursor?: number;
  t0?: number;
  awaiting?: boolean;
  finished?: boolean;
  /** The next request is a poll to send after the poll interval. */
  pollDue?: boolean;
}
/** The autocannon 9 client internals the poll pacing hooks into. */
interface ClientInternals {
  _doRequest: () => void;
  destroyed: boolean;
  requestIterator: { context: object };
}

const GRACE_SECONDS = 5;
const MODEL = { name: 'echo', version: 'v1' };
const JSON_HEADERS = { 'content-type': 'application/json' };
const OCTETS = { 'content-type': 'application/octet-stream' };

const parse = (body: string): Record<string, unknown> | undefined => {
  try {
    const value = JSON.parse(body) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};
const unexpected = (status: number, body: string): Outcome => ({ error: `HTTP ${status}: ${body.slice(0, 160)}` });
function expect(want: number): Step['check'] {
  return (status, body) => (status === want ? 'next' : unexpected(status, body));
}
const get = (path: string): Req => ({ method: 'GET', path });

function scenarios(options: LoadTestOptions): Scenario[] {
  const sleep = options.runnerSleepMs !== undefined ? { sleep_ms: options.runnerSleepMs } : {};
  const step = (request: Step['request'], check: Step['check']): Step => ({ request, check });
  const startJob = (withPayload: boolean): Step =>
    step((job) => {
      const body = JSON.stringify({ job_id: job.id, model: MODEL, ...(withPayload ? { payload: job.payload } : {}) });
      return { method: 'POST', path: '/start-job', headers: JSON_HEADERS, body };
    }, expect(200));
  // The big payload is built once; each request only splices in its job id.
  const bigBytes = options.bigPayloadBytes ?? 10 * 1024 * 1024;
  const big = JSON.stringify({ ...sleep, blob: 'x'.repeat(bigBytes) });
  const bigEscaped = Buffer.from(JSON.stringify(big));
  const startBigJob = step((job) => {
    const head = Buffer.from(`{"job_id":${JSON.stringify(job.id)},"model":${JSON.stringify(MODEL)},"payload":`);
    const body = Buffer.concat([head, bigEscaped, Buffer.from('}')]);
    return { method: 'POST', path: '/start-job', headers: JSON_HEADERS, body };
  }, expect(200));
  const upload = step(
    (job) => ({ method: 'PUT', path: `/jobs/${job.id}/inputs/input`, headers: OCTETS, body: job.payload }),
    expect(201),
  );
  const waitReady = step(
    (job) => get(`/jobs/${job.id}/wait_ready`),
    (status, body) => (status === 200 && parse(body)?.status === 'done' ? 'done' : unexpected(status, body)),
  );
  const pollResult = step(
    (job) => get(`/jobs/${job.id}/result`),
    (status, body, job) => {
      if (status === 202) return 'again';
      const result = status === 200 ? parse(body)?.result : undefined;
      return JSON.stringify(result) === job.payload ? 'done' : unexpected(status, body);
    },
  );
  const unknownStatus = step(
    (job) => get(`/jobs/${job.id}/status`),
    (status, body) => (status >= 400 && status < 500 ? 'next' : unexpected(status, body)),
  );
  const unknownResult = step(
    (job) => get(`/jobs/${job.id}/result`),
    (status, body, job) =>
      parse(body)?.message === `Data for job \`${job.id}\` does not exist` ? 'done' : unexpected(status, body),
  );
  const sheepStatus = step(
    () => get('/status'),
    (status, body) => (status === 200 && typeof parse(body)?.sheep === 'object' ? 'done' : unexpected(status, body)),
  );
  return [
    { name: 'inline job, poll result', weight: 20, steps: [startJob(true), pollResult] },
    { name: 'uploaded input, wait_ready', weight: 20, steps: [upload, startJob(false), waitReady] },
    { name: `${(bigBytes / 1024 ** 2).toPrecision(2)} MB payload, wait_ready`, weight: 20, steps: [startBigJob, waitReady] },
    { name: 'job, wait_ready', weight: 20, steps: [startJob(true), waitReady] },
    { name: 'unknown job', weight: 5, steps: [unknownStatus, unknownResult] },
    { name: 'GET /status', weight: 10, steps: [sheepStatus] },
  ];
}

/** Runs the weighted scenarios until `durationSeconds` or `maxRequests`, whichever comes first. */
export async function runLoadTest(options: LoadTestOptions): Promise<LoadTestReport> {
  const base = new URL(options.url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname)) throw new Error(`loopback only: ${options.url}`);
  const all = scenarios(options);
  const newTotal = () => ({ started: 0, count: 0, errors: 0, http5xx: 0, samples: [] as number[], firstError: '' });
  const totals = new Map(all.map((s) => [s, newTotal()]));
  const totalWeight = all.reduce((sum, s) => sum + s.weight, 0);
  const sleep = options.runnerSleepMs !== undefined ? { sleep_ms: options.runnerSleepMs } : {};
  const tag = `lt-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  let jobs = 0;

  const pick = (): Scenario => {
    let r = Math.random() * totalWeight;
    return all.find((s) => (r -= s.weight) < 0) ?? (all[all.length - 1] as Scenario);
  };
  const finish = (user: User, error?: string): void => {
    const total = user.scenario && totals.get(user.scenario);
    if (!total || user.finished) return;
    user.finished = true;
    total.count++;
    if (error === undefined) total.samples.push(performance.now() - (user.t0 ?? 0));
    else if (total.errors++ === 0) total.firstError = error;
  };

  const maxPolls = options.maxPolls ?? 1000;
  const slots = Math.max(maxPolls + 1, ...all.map((s) => s.steps.length));
  const requests: Req[] = Array.from({ length: slots }, (_, slot) => ({
    setupRequest: (req: Req, context: object): Req => {
      const user = context as User;
      if (slot === 0) {
        user.scenario = pick();
        const total = totals.get(user.scenario);
        if (total) total.started++;
        user.job = { id: `${tag}-${(jobs++).toString(36)}`, payload: JSON.stringify({ x: jobs, ...sleep }) };
        user.cursor = 0;
        user.t0 = performance.now();
      } else if (user.awaiting) {
        finish(user, 'no answer (connection error or timeout)');
      }
      const step = user.scenario?.steps[user.cursor ?? 0];
      if (user.finished || !step || !user.job) return null as unknown as Req; // restart the chain
      user.awaiting = true;
      return { ...req, headers: {}, body: undefined, ...step.request(user.job) };
    },
    onResponse: (status: number, body: string, context: object): void => {
      const user = context as User;
      const total = user.scenario && totals.get(user.scenario);
      const step = user.scenario?.steps[user.cursor ?? 0];
      if (!total || !step || !user.job || user.finished) return;
      user.awaiting = false;
      if (status >= 500) total.http5xx++;
      const outcome = step.check(status, body, user.job);
      if (outcome === 'done') finish(user);
      else if (typeof outcome === 'object') finish(user, outcome.error);
      else if (slot === slots - 1) finish(user, `not finished after ${slot} requests`);
      else if (outcome === 'next') user.cursor = (user.cursor ?? 0) + 1;
      else user.pollDue = true;
    },
  }));
  const pollIntervalMs = options.pollIntervalMs ?? 50;
  const setupClient = (client: autocannon.Client): void => {
    const internals = client as unknown as ClientInternals;
    const send = internals._doRequest.bind(internals);
    internals._doRequest = () => {
      const user = internals.requestIterator.context as User;
      if (!user.pollDue || pollIntervalMs <= 0) return send();
      user.pollDue = false;
      setTimeout(() => internals.destroyed || send(), pollIntervalMs);
    };
  };

  const connections = Math.max(1, Math.min(options.connections, options.maxRequests));
  const started = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: base.origin,
        connections,
        duration: options.durationSeconds,
        maxOverallRequests: options.maxRequests,
        timeout: options.durationSeconds + GRACE_SECONDS, // long enough for any wait_ready within the run
        requests,
        setupClient,
      },
      (error: Error | null, res: autocannon.Result) => (error ? reject(error) : resolve(res)),
    );
    // autocannon stops itself; these only guard against it not doing so.
    const stopAt = setTimeout(() => instance.stop(), (options.durationSeconds + GRACE_SECONDS) * 1000);
    const giveUpMs = (options.durationSeconds + 3 * GRACE_SECONDS) * 1000;
    const giveUp = setTimeout(() => reject(new Error('autocannon did not stop')), giveUpMs);
    instance.once('done', () => {
      clearTimeout(stopAt);
      clearTimeout(giveUp);
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const requestsDone = result.requests.total; // completed ones
  return {
    scenarios: all.map((s) => {
      const { started, count, errors, http5xx, samples, firstError } = totals.get(s) ?? newTotal();
      const latency = percentiles(samples);
      const report: ScenarioReport = { name: s.name, weight: s.weight, started, count, errors, http5xx, latency };
      return firstError ? { ...report, firstError } : report;
    }),
    requests: requestsDone,
    requestsPerSecond: requestsDone / seconds,
    seconds,
    http5xx: result['5xx'],
    connectionErrors: result.errors,
  };
}

export function formatReport(report: LoadTestReport): string {
  const head = ['scenario', 'weight', 'started', 'done', 'errors', '5xx', 'p50', 'p95', 'p99'];
  const rows = report.scenarios.map(({ latency, ...s }) =>
    [s.name, s.weight, s.started, s.count, s.errors, s.http5xx].map(String).concat(
      [latency.p50, latency.p95, latency.p99].map(formatMs),
    ),
  );
  const errors = report.scenarios.filter((s) => s.firstError).map((s) => `  ${s.name}: ${s.firstError}`);
  return [
    formatTable(head, rows),
    '',
    `${report.requests} requests in ${report.seconds.toFixed(1)} s (${report.requestsPerSecond.toFixed(0)}/s), ` +
      `5xx: ${report.http5xx}, connection errors/timeouts: ${report.connectionErrors}`,
    ...(errors.length ? ['first error per scenario:', ...errors] : []),
  ].join('\n');
}

function cli(argv: string[]): LoadTestOptions {
  const text = { type: 'string' } as const;
  const { values } = parseArgs({
    args: argv,
    options: { url: text, duration: text, max: text, connections: text, 'sleep-ms': text, 'poll-ms': text },
  });
  const number = (name: keyof typeof values, min = 1): number | undefined => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    if (!(Number(raw) >= min)) throw new Error(`--${name} must be a number >= ${min}, not ${raw}`);
    return Number(raw);
  };
  return {
    url: values.url ?? '',
    durationSeconds: number('duration') ?? 30,
    maxRequests: number('max') ?? 2000,
    connections: number('connections') ?? 10,
    runnerSleepMs: number('sleep-ms', 0),
    pollIntervalMs: number('poll-ms', 0),
  };
}

/** Without --url, a local Shepherd (gateway + 2 bare sheep running the echo runner) is started for the run and removed after. */
async function againstShepherd(options: LoadTestOptions): Promise<LoadTestReport> {
  if (options.url) return runLoadTest(options);
  const { LocalShepherd } = await import('./shepherd');
  const shepherd = new LocalShepherd(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', ['s1', 's2']);
  await shepherd.start();
  try {
    await shepherd.startWorker('s1');
    await shepherd.startWorker('s2');
    return await runLoadTest({ ...options, url: shepherd.url });
  } finally {
    await shepherd.stop();
  }
}

if (require.main === module) {
  Promise.resolve()
    .then(() => againstShepherd(cli(process.argv.slice(2))))
    .then((report) => {
      console.log(formatReport(report));
      process.exit(report.http5xx > 0 ? 1 : 0);
    })
    .catch((error: Error) => {
      console.error(error.message);
      process.exit(2);
    });
}
