// Measures the gateway while big start-job bodies arrive: 40 jobs whose
// payload is JSON.stringify({blob: 'x'.repeat(10 MB)}), sent by 4 concurrent
// clients, then the gateway's event-loop delay (monitorEventLoopDelay at 1 ms
// resolution) and its CPU time over those 40 jobs. Not a test (timings on a
// shared machine are no pass/fail); run by hand after `pnpm build`, with
// Redis on 127.0.0.1:6379:
//
//   node apps/gateway/test/big-payloads.measure.cjs
//   GATEWAY_DIST=/path/to/another/dist node apps/gateway/test/big-payloads.measure.cjs
//
// JOBS and CLIENTS change the counts. The gateway runs in a child process
// (this file again), so the clients' CPU is not counted.
'use strict';
const { fork } = require('node:child_process');
const { once } = require('node:events');
const { mkdtempSync, rmSync } = require('node:fs');
const http = require('node:http');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { Writable } = require('node:stream');

const REDIS_URL = 'redis://127.0.0.1:6379';
const RESOLUTION_MS = 1;

if (process.argv[2] === '--gateway') runGateway();
else main().catch((error) => {
  console.error(error);
  process.exit(1);
});

/** The child: one gateway, its loop delay and CPU measured between 'reset' and 'report'. */
function runGateway() {
  const { ConfigSchema } = require('@shepherd/config');
  const { createGateway } = require(join(process.env.GATEWAY_DIST, 'gateway.js'));
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let cpu = process.cpuUsage();
  // Node records the whole timer interval: the delay is what exceeds the resolution.
  const ms = (ns) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  (async () => {
    const config = ConfigSchema.parse({
      redis: { url: REDIS_URL, prefix: process.env.PREFIX },
      storage: { backend: 'filesystem', root: process.env.FS_ROOT },
      gateway: { payload_limit: '16mb' },
      sheep: { sheep_a: { type: 'bare', port: 19001, working_directory: '.' } },
    });
    const app = await createGateway(config, { logDestination: new Writable({ write: (_c, _e, done) => done() }) });
    await app.listen(0, '127.0.0.1');
    process.send({ kind: 'listening', port: app.getHttpServer().address().port });
    process.on('message', async (message) => {
      if (message === 'reset') {
        histogram.reset();
        cpu = process.cpuUsage();
        process.send({ kind: 'reset' });
      } else if (message === 'report') {
        const used = process.cpuUsage(cpu);
        const loop = { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max), samples: histogram.count };
        process.send({ kind: 'report', cpuMs: (used.user + used.system) / 1000, userMs: used.user / 1000, systemMs: used.system / 1000, loop });
      } else if (message === 'close') {
        await app.close();
        process.exit(0);
      }
    });
  })();
}

async function main() {
  const jobs = Number(process.env.JOBS ?? 40);
  const clients = Number(process.env.CLIENTS ?? 4);
  const dist = resolve(process.env.GATEWAY_DIST ?? join(__dirname, '../dist'));
  const prefix = `measure-${Date.now().toString(36)}`;
  const root = mkdtempSync(join(tmpdir(), 'measure-fs-'));
  const child = fork(__filename, ['--gateway'], { env: { ...process.env, GATEWAY_DIST: dist, PREFIX: prefix, FS_ROOT: root } });
  const ask = async (message, kind) => {
    child.send(message);
    for (;;) {
      const [answer] = await once(child, 'message');
      if (answer.kind === kind) return answer;
    }
  };
  const [{ port }] = await once(child, 'message');
  const payload = JSON.stringify({ blob: 'x'.repeat(10 * 1024 * 1024) });
  const rest = Buffer.from(`, "model": {"name": "echo", "version": "v1"}, "payload": ${JSON.stringify(payload)}}`);
  let n = 0;
  const send = async (count) => {
    const ids = Array.from({ length: count }, () => `${prefix}-${n++}`);
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = c; i < ids.length; i += clients) await post(port, Buffer.concat([Buffer.from(`{"job_id": "${ids[i]}"`), rest]));
      }),
    );
  };
  try {
    await send(clients); // warm-up: JIT, connections
    await ask('reset', 'reset');
    const started = Date.now();
    await send(jobs);
    const wallMs = Date.now() - started;
    const report = await ask('report', 'report');
    const round = (x) => Math.round(x * 10) / 10;
    const { p50, p99, max, samples } = report.loop;
    console.log(JSON.stringify({ dist, jobs, clients, wallMs, cpuMs: round(report.cpuMs), userMs: round(report.userMs), systemMs: round(report.systemMs), loopMs: { p50: round(p50), p99: round(p99), max: round(max), samples } }));
  } finally {
    child.send('close');
    await once(child, 'exit');
    await deleteKeys(`${prefix}:*`);
    rmSync(root, { recursive: true, force: true });
  }
}

function post(port, body) {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': body.length };
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/start-job', headers }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${res.statusCode} ${Buffer.concat(chunks)}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function deleteKeys(pattern) {
  const { Redis } = require('ioredis');
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}
