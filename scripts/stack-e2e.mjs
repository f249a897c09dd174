#!/usr/bin/env node
// The compose stack end to end on the real Docker engine, started by the
// README's own command (scripts/stack.sh up --local: the local stand-ins of
// docker/compose.local.yml): a job goes in over HTTP to the gateway
// container and comes back from the worker container, whose docker sheep
// runs the example echo runner pulled from the stack's registry. Then the
// Bull Board page and its assets, then a restart of the worker, a SIGKILL of
// Redis (append-only file) and a restart of the gateway while jobs wait:
// none is lost.
// Runs on free ports under its own project name, and cleans up after itself.
//   node scripts/stack-e2e.mjs [--keep]   (--keep leaves the stack up)
import { execFileSync, spawnSync } from 'node:child_process';
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
  MINIO_ROOT_USER: 'e2e-user',
  MINIO_ROOT_PASSWORD: 'e2e-password-1',
  SHEPHERD_ADMIN_USERNAME: 'admin',
  SHEPHERD_ADMIN_PASSWORD: 'e2e-board',
};
const boardAuth = { authorization: `Basic ${Buffer.from('admin:e2e-board').toString('base64')}` };
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
async function http(path, init) {
  const response = await fetch(`${gateway}${path}`, { signal: AbortSignal.timeout(30_000), ...init });
  return { status: response.status, text: await response.text() };
}
async function startJob(jobId, payload) {
  const answer = await http('/start-job', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
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
  await ready(10_000);
  log('stack up: gateway ready, echo:v1 in its registry');

  await startJob('e2e-first', { hello: 'stack' });
  await waitDone('e2e-first', 120_000);
  const result = await http('/jobs/e2e-first/result');
  check(result.status === 200, `result answered ${result.status}`);
  const output = JSON.parse(result.text);
  check(JSON.stringify(output.result) === '{"hello":"stack"}', `result echoes the payload: ${result.text}`);
  check(output.model?.name === 'echo', `result comes from the echo model: ${result.text}`);
  const runners = execFileSync('docker', ['ps', '-q', '--filter', 'label=shepherd.sheep=cpu_1']).toString().trim();
  check(runners !== '', 'a runner container labelled shepherd.sheep=cpu_1 runs');
  log('job e2e-first: gateway container → worker container → runner container → done, result echoed');

  const anonymous = await http('/admin/queues');
  check(anonymous.status === 401, `Bull Board without credentials answered ${anonymous.status}`);
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
  log(`Bull Board: 401 without credentials; page and ${assets.length} assets 200 with them; its API lists model.echo@v1`);

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
    log('stack removed');
  }
}
clearInterval(alive);
process.exit(failed ? 1 : 0);
