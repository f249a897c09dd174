#!/usr/bin/env node
// The compose stack end to end on the real Docker engine, started by the
// README's own command (scripts/stack.sh up --local: the local stand-ins of
// docker/compose.local.yml): a job goes in over HTTP to the gateway
// container and comes back from the worker container, whose docker sheep
// runs the example echo runner pulled from the stack's registry. The stack
// is safe by default: stack.sh makes its env file of random secrets (here in
// a temporary directory), every request sends its token, and a request
// without one is refused, as are Redis, S3 and the registry without their
// passwords. Then the Bull Board page and its assets (the admin token only),
// then a restart of the worker, a SIGKILL of Redis (append-only file) and a
// restart of the gateway while jobs wait: none is lost.
// Runs on free ports under its own project name, and cleans up after itself.
//   node scripts/stack-e2e.mjs [--keep]   (--keep leaves the stack up)
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const keep = process.argv.includes('--keep');
const started = Date.now();
// A fetch to a port Docker publishes while the container behind it starts
// can hang on a socket that holds nothing open: each fetch gets a deadline,
// and this keeps the process alive for it.
const alive = setInterval(() => {}, 1000);

function log(message) {
  console.log(`[stack-e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const { freePort, tempDir, waitFor } = require(join(repo, 'packages/testing/dist'));

const secretsDir = tempDir('stack-secrets');
const envFile = join(secretsDir, 'stack.env');
const ports = { gateway: await freePort(), redis: await freePort(), s3: await freePort(), console: await freePort(), registry: await freePort() };
const env = {
  ...process.env,
  COMPOSE_PROJECT_NAME: `shepherd-e2e-${process.pid}`,
  SHEPHERD_PORT: String(ports.gateway),
  SHEPHERD_REDIS_PORT: String(ports.redis),
  SHEPHERD_S3_PORT: String(ports.s3),
  SHEPHERD_S3_CONSOLE_PORT: String(ports.console),
  SHEPHERD_REGISTRY_PORT: String(ports.registry),
  SHEPHERD_DATA_ROOT: tempDir('stack-data'),
  // stack.sh makes it on first start, as it makes .shepherd.env by default.
  SHEPHERD_ENV_FILE: envFile,
};
for (const name of Object.keys(env)) {
  // Secrets come from the env file only, never from this shell.
  if (/^SHEPHERD_(ADMIN|SUBMIT|REDIS|S3|REGISTRY)_/.test(name) && !/_PORT$/.test(name)) delete env[name];
}
/** The env file as stack.sh wrote it. */
function readEnvFile() {
  const entries = readFileSync(envFile, 'utf8')
    .split('\n')
    .filter((line) => /^[A-Z0-9_]+=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]);
  return Object.fromEntries(entries);
}
let secrets = {};
const bearer = (token) => ({ authorization: `Bearer ${token}` });
const basic = (user, password) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
/** A compose command on the stack's files, through scripts/stack.sh. */
function compose(args, extraEnv = {}) {
  return spawnSync('bash', ['scripts/stack.sh', 'compose', '--local', ...args], { cwd: repo, env: { ...env, ...extraEnv }, encoding: 'utf8' });
}
function composeOk(...args) {
  const run = compose(args);
  if (run.status !== 0) throw new Error(`compose ${args.join(' ')} exited ${run.status}: ${run.stderr}`);
  return run.stdout;
}

const gateway = `http://127.0.0.1:${ports.gateway}`;
/** A request to the gateway, with the submit token unless `init.headers` says otherwise. */
async function http(path, init = {}) {
  // An empty header is one not sent: `{ authorization: '' }` asks without a token.
  const headers = Object.fromEntries(Object.entries({ ...bearer(secrets.SHEPHERD_SUBMIT_TOKEN), ...init.headers }).filter(([, value]) => value !== ''));
  const response = await fetch(`${gateway}${path}`, { signal: AbortSignal.timeout(30_000), ...init, headers });
  return { status: response.status, text: await response.text() };
}
/** What Redis on the host port answers to `commands`, one reply line each. */
function redisSays(commands) {
  return new Promise((resolve, reject) => {
    const socket = connect(ports.redis, '127.0.0.1');
    let replies = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('Redis did not answer within 10 s')));
    socket.on('connect', () => socket.write(commands.map((c) => `${c}\r\n`).join('')));
    socket.on('data', (chunk) => {
      replies += chunk.toString();
      const lines = replies.split('\r\n').filter(Boolean);
      if (lines.length >= commands.length) {
        socket.end();
        resolve(lines.slice(0, commands.length));
      }
    });
    socket.on('error', reject);
  });
}
async function startJob(jobId, payload) {
  const answer = await http('/start-job', {
    method: 'POST',
    headers: { ...bearer(secrets.SHEPHERD_SUBMIT_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ job_id: jobId, model: { name: 'echo', version: 'v1' }, payload: JSON.stringify(payload) }),
  });
  check(answer.status === 200, `POST /start-job ${jobId} answered ${answer.status} ${answer.text}`);
}
async function waitDone(jobId, timeoutMs) {
  return waitFor(
    async () => {
      const answer = await http(`/jobs/${jobId}/wait_ready?timeout=5`).catch(() => undefined);
      if (!answer || answer.status === 202 || answer.status >= 502) return undefined;
      const status = JSON.parse(answer.text);
      check(status.status === 'done', `job ${jobId} ended ${answer.status} ${answer.text}`);
      return status;
    },
    timeoutMs,
    `job ${jobId} done`,
  );
}
async function ready(timeoutMs) {
  await waitFor(() => http('/ready').then((r) => r.status === 200, () => false), timeoutMs, 'the gateway ready');
}

let failed = false;
try {
  log(`scripts/stack.sh up (project ${env.COMPOSE_PROJECT_NAME}, gateway on ${gateway}, data root ${env.SHEPHERD_DATA_ROOT})`);
  execFileSync('bash', ['scripts/stack.sh', 'up', '--local', '--no-follow'], { cwd: repo, env, stdio: 'inherit' });
  secrets = readEnvFile();
  const envFileText = readFileSync(envFile, 'utf8');
  check((statSync(envFile).mode & 0o777) === 0o600, `the env file is mode 600, not ${(statSync(envFile).mode & 0o777).toString(8)}`);
  for (const name of ['SHEPHERD_ADMIN_TOKEN', 'SHEPHERD_SUBMIT_TOKEN', 'SHEPHERD_REDIS_PASSWORD', 'SHEPHERD_S3_ACCESS_KEY', 'SHEPHERD_S3_SECRET_KEY', 'SHEPHERD_REGISTRY_PASSWORD']) {
    check((secrets[name] ?? '').length >= 16, `the env file holds ${name} (16 characters or more)`);
  }
  await ready(10_000);
  log('stack up: gateway ready with the submit token of the env file stack.sh made (mode 600), echo:v1 in its registry');

  // Nobody gets in without a token.
  const health = await http('/health', { headers: { authorization: '' } });
  check(health.status === 200, `/health without a token answered ${health.status}`);
  for (const [what, headers] of [['no token', { authorization: '' }], ['an unknown token', bearer('not-a-token-of-this-stack')]]) {
    for (const path of ['/ready', '/status', '/metrics', '/jobs/e2e-first/status']) {
      const answer = await http(path, { headers });
      check(answer.status === 401, `GET ${path} with ${what} answered ${answer.status} ${answer.text}`);
    }
    const submit = await http('/start-job', {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 'e2e-intruder', model: { name: 'echo', version: 'v1' }, payload: '{}' }),
    });
    check(submit.status === 401, `POST /start-job with ${what} answered ${submit.status} ${submit.text}`);
  }
  log('gateway: 401 without a token or with an unknown one (start-job, ready, status, metrics, a job); /health open');

  // Redis, S3 and the registry on their 127.0.0.1 ports: their passwords or nothing.
  const [ping, wrong] = await redisSays(['PING', 'AUTH not-the-password']);
  check(/^-NOAUTH/.test(ping), `Redis answered PING without the password: ${ping}`);
  check(/^-(WRONGPASS|ERR)/.test(wrong), `Redis took a wrong password: ${wrong}`);
  const [auth, pong] = await redisSays([`AUTH ${secrets.SHEPHERD_REDIS_PASSWORD}`, 'PING']);
  check(auth === '+OK' && pong === '+PONG', `Redis with the env file's password answered ${auth} ${pong}`);
  const s3 = await fetch(`http://127.0.0.1:${ports.s3}/shepherd`, { signal: AbortSignal.timeout(10_000) });
  check(s3.status === 403, `S3 without keys answered ${s3.status}`);
  const registryUrl = `http://127.0.0.1:${ports.registry}/v2/`;
  const registryAnonymous = await fetch(registryUrl, { signal: AbortSignal.timeout(10_000) });
  check(registryAnonymous.status === 401, `the registry without a login answered ${registryAnonymous.status}`);
  const registryWrong = await fetch(registryUrl, { headers: basic(secrets.SHEPHERD_REGISTRY_USERNAME, 'wrong-password'), signal: AbortSignal.timeout(10_000) });
  check(registryWrong.status === 401, `the registry with a wrong password answered ${registryWrong.status}`);
  const registryLogin = await fetch(registryUrl, { headers: basic(secrets.SHEPHERD_REGISTRY_USERNAME, secrets.SHEPHERD_REGISTRY_PASSWORD), signal: AbortSignal.timeout(10_000) });
  check(registryLogin.status === 200, `the registry with the env file's login answered ${registryLogin.status}`);
  log('Redis: NOAUTH without the password, refused with a wrong one; S3: 403 without keys; registry: 401 without its login');

  // stack.sh pushed echo:v1 from this engine: drop the local copy, so the
  // worker must pull it from the registry with the env file's login.
  const modelImage = `127.0.0.1:${ports.registry}/echo:v1`;
  execFileSync('docker', ['rmi', modelImage], { stdio: 'ignore' });
  await startJob('e2e-first', { hello: 'stack' });
  await waitDone('e2e-first', 120_000);
  const result = await http('/jobs/e2e-first/result');
  check(result.status === 200, `result answered ${result.status}`);
  const output = JSON.parse(result.text);
  check(JSON.stringify(output.result) === '{"hello":"stack"}', `result echoes the payload: ${result.text}`);
  check(output.model?.name === 'echo', `result comes from the echo model: ${result.text}`);
  const runners = execFileSync('docker', ['ps', '-q', '--filter', 'label=shepherd.sheep=cpu_1']).toString().trim();
  check(runners !== '', 'a runner container labelled shepherd.sheep=cpu_1 runs');
  check(spawnSync('docker', ['image', 'inspect', modelImage], { stdio: 'ignore' }).status === 0, `the worker pulled ${modelImage}`);
  log('job e2e-first: gateway container → worker container → runner container (pulled with the registry login) → done, result echoed');

  const boardAuth = basic('anyone', secrets.SHEPHERD_ADMIN_TOKEN);
  const anonymous = await http('/admin/queues', { headers: { authorization: '' } });
  check(anonymous.status === 401, `Bull Board without credentials answered ${anonymous.status}`);
  check(/^Basic/i.test(await fetch(`${gateway}/admin/queues`).then((r) => r.headers.get('www-authenticate') ?? '')), 'Bull Board asks browsers for Basic auth');
  for (const [what, headers] of [
    ['the submit token', bearer(secrets.SHEPHERD_SUBMIT_TOKEN)],
    ['the submit token as Basic auth password', basic('anyone', secrets.SHEPHERD_SUBMIT_TOKEN)],
  ]) {
    const answer = await http('/admin/queues', { headers });
    check(answer.status === 403, `Bull Board with ${what} answered ${answer.status}`);
  }
  const wrongPassword = await http('/admin/queues', { headers: basic('admin', 'not-the-admin-token') });
  check(wrongPassword.status === 401, `Bull Board with a wrong password answered ${wrongPassword.status}`);
  const adminBearer = await http('/admin/queues/api/queues', { headers: bearer(secrets.SHEPHERD_ADMIN_TOKEN) });
  check(adminBearer.status === 200, `Bull Board's API with the admin token as Bearer answered ${adminBearer.status}`);
  const board = await http('/admin/queues', { headers: boardAuth });
  check(board.status === 200 && board.text.includes('<html'), `Bull Board page answered ${board.status}`);
  const assets = [...board.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((url) => !url.startsWith('http'));
  check(assets.length > 0, 'Bull Board page names its assets');
  for (const asset of assets) {
    const url = asset.startsWith('/') ? asset : `/admin/queues/${asset.replace(/^\.\//, '')}`;
    const answer = await fetch(`${gateway}${url}`, { headers: boardAuth, signal: AbortSignal.timeout(30_000) });
    check(answer.status === 200 && (await answer.arrayBuffer()).byteLength > 0, `Bull Board asset ${url} answered ${answer.status}`);
  }
  const queues = await http('/admin/queues/api/queues', { headers: boardAuth });
  check(queues.status === 200 && queues.text.includes('model.echo@v1'), `Bull Board lists the model queue: ${queues.status}`);
  log(`Bull Board: 401 without credentials or a wrong one, 403 with the submit token; page and ${assets.length} assets 200 with the admin token (Basic, any user); its API lists model.echo@v1`);

  for (const service of ['worker-cpu-1', 'redis', 'gateway']) {
    const ids = [1, 2, 3].map((n) => `e2e-${service}-${n}`);
    for (const id of ids) await startJob(id, { service, sleep_ms: 1000 });
    const restartStarted = Date.now();
    if (service === 'redis') {
      // A crash, not a clean stop: what was acknowledged must be in the
      // append-only file already.
      composeOk('kill', '-s', 'SIGKILL', service);
      composeOk('start', service);
    } else {
      composeOk('restart', service);
    }
    const how = service === 'redis' ? 'killed (SIGKILL) and started' : 'restarted';
    log(`${how} ${service} (${Date.now() - restartStarted} ms) with ${ids.length} jobs accepted`);
    await ready(120_000);
    for (const id of ids) await waitDone(id, 120_000);
    log(`all ${ids.length} jobs done after the ${service} restart`);
  }

  // No GPU here: the GPU profile's worker must reach the engine with its
  // device reservation and get the engine's own refusal.
  const gpu = compose(['up', '-d', '--no-deps', 'worker-gpu-0'], { COMPOSE_PROFILES: 'gpu' });
  check(gpu.status !== 0 && /could not select device driver "nvidia" with capabilities: \[\[gpu\]\]/.test(gpu.stderr), `GPU worker start: ${gpu.stderr}`);
  log('GPU profile: worker-gpu-0 asks the engine for an nvidia GPU, refused here (no GPU)');
  check(readFileSync(envFile, 'utf8') === envFileText, 'later stack.sh commands reuse the env file as it is');
  log('stack end to end: passed');
} catch (error) {
  failed = true;
  console.error(`[stack-e2e] FAILED: ${error instanceof Error ? error.message : error}`);
  try {
    console.error(composeOk('logs', '--no-color', '--tail', '60'));
  } catch {
    // compose itself broke: its own error is above
  }
} finally {
  if (!keep) {
    // With the gpu profile, so the GPU worker's container goes too.
    const down = compose(['down', '-v', '--remove-orphans'], { COMPOSE_PROFILES: 'gpu' });
    if (down.status !== 0) console.error(`[stack-e2e] compose down failed: ${down.stderr}`);
    const left = execFileSync('docker', ['ps', '-aq', '--filter', 'label=shepherd.sheep=cpu_1']).toString().trim();
    if (left) execFileSync('docker', ['rm', '-f', ...left.split('\n')]);
    // stack.sh logged this engine's client in to the stack's registry.
    spawnSync('docker', ['logout', `127.0.0.1:${ports.registry}`], { stdio: 'ignore' });
    log('stack removed');
  }
}
clearInterval(alive);
process.exit(failed ? 1 : 0);
