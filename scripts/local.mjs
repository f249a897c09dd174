#!/usr/bin/env node
// Runs a whole single-machine Shepherd from one config: the gateway and one
// worker process per configured sheep. Output lines are prefixed with their
// process; Ctrl-C (SIGINT) or SIGTERM stops the workers gracefully (each
// finishes the job in hand), then the gateway.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { loadConfig } = require(join(root, 'packages/config/dist/index.js'));

const configPath = process.argv[2] ?? join(root, 'examples/configs/shepherd-bare.yml');
const config = loadConfig(configPath);
const children = new Map();

function start(name, args) {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => console.log(`${name.padEnd(12)} | ${line}`));
  }
  child.on('exit', (code, signal) => {
    children.delete(name);
    console.log(`${name.padEnd(12)} | exited (${signal ?? code})`);
    if (!stopping) stop(1);
  });
  children.set(name, child);
}

let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  const ended = (child) => new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
  const workers = [...children].filter(([name]) => name !== 'gateway').map(([, child]) => child);
  for (const child of workers) child.kill('SIGTERM');
  await Promise.all(workers.map(ended));
  const gateway = children.get('gateway');
  if (gateway) {
    gateway.kill('SIGTERM');
    await ended(gateway);
  }
  process.exit(code);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

start('gateway', [join(root, 'apps/gateway/dist/cli.js'), '-c', configPath]);
for (const sheepId of Object.keys(config.sheep)) {
  start(sheepId, [join(root, 'apps/worker/dist/main.js'), '-c', configPath, '--sheep', sheepId]);
}
