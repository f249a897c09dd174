import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildEchoRunnerImage,
  dockerAnswers,
  freePort,
  pushImage,
  startRegistry,
  tempDir,
  uniqueId,
  waitFor,
  type RegistryHandle,
  type RunnerSigterm,
} from '@shepherd/testing';
import { BareRunnerHost, RunnerDiedError, RunnerStoppedError } from '@shepherd/worker';
import { Runner } from '@shepherd/worker/dist/runner';
import { echo, MODELS, RUNNER_CLI, startStack, type Stack } from './harness';

// Stopping runners without waiting for a grace they will not use: a model
// switch on images whose main process ignores SIGTERM, a pull that fails
// before the loaded runner is touched, two deployments on one engine, and
// Runner.abort(). Real Docker engine, real registry, real processes.
jest.setTimeout(120_000);
let registry: RegistryHandle;

/** Images in the registry, by model name: how each one's main process treats SIGTERM. */
const IMAGES: Record<string, RunnerSigterm> = { pid1: 'shell-pid1', noterm: 'ignored' };

beforeAll(async () => {
  if (!dockerAnswers()) throw new Error('No Docker engine answers: run scripts/setup.sh (it starts dockerd)');
  registry = await startRegistry();
  for (const [name, sigterm] of Object.entries(IMAGES)) {
    for (const version of ['v1', 'v2']) {
      const local = `local/fast-stop-${name}:${version}`;
      buildEchoRunnerImage(local, { name, version }, { sigterm });
      pushImage(local, `${registry.address}/${name}:${version}`);
    }
  }
}, 600_000);

afterAll(async () => {
  await registry?.stop();
});

function containers(...labels: string[]): string[] {
  const filters = labels.flatMap((label) => ['--filter', `label=${label}`]);
  return execFileSync('docker', ['ps', '-aq', '--no-trunc', ...filters]).toString().split('\n').filter(Boolean);
}

function running(id: string): boolean {
  try {
    return execFileSync('docker', ['inspect', '-f', '{{.State.Running}}', id]).toString().trim() === 'true';
  } catch {
    return false; // gone
  }
}

function removeContainers(sheepId: string): void {
  for (const id of containers(`shepherd.sheep=${sheepId}`)) execFileSync('docker', ['rm', '-f', id]);
}

async function dockerStack(sheepId: string, extra: Record<string, unknown> = {}): Promise<Stack> {
  return startStack({
    registry: { url: `http://${registry.address}` },
    sheep: { [sheepId]: { type: 'docker', port: await freePort(), autoremove_containers: true, ...extra } },
  });
}

/** Runs one job to its end; resolves with its status and how long submit → ready took. */
async function timedJob(stack: Stack, model: { name: string; version: string }): Promise<{ jobId: string; status: Record<string, unknown>; ms: number }> {
  const jobId = uniqueId('job');
  const started = performance.now();
  await stack.submit({ job_id: jobId, model, payload: '{}' });
  const status = await stack.waitReady(jobId);
  return { jobId, status, ms: Math.round(performance.now() - started) };
}

async function modelLoads(stack: Stack, sheepId: string): Promise<number | undefined> {
  return (await stack.sheepState(sheepId))?.modelLoads;
}

describe('a model switch on a docker sheep', () => {
  const cases = [
    { title: 'a shell as PID 1 (ignores SIGTERM unless an init runs it)', name: 'pid1', sheep: {} },
    { title: 'a main process that ignores SIGTERM, the default stop_timeout (1s)', name: 'noterm', sheep: {} },
    { title: 'a main process that ignores SIGTERM, stop_timeout 500ms', name: 'noterm', sheep: { stop_timeout: '500ms' } },
  ];
  it.each(cases)('replaces the container: $title', async ({ title, name, sheep }) => {
    const sheepId = uniqueId('fs');
    const stack = await dockerStack(sheepId, sheep);
    try {
      expect((await timedJob(stack, { name, version: 'v1' })).status.status).toBe('done');
      const [old] = containers(`shepherd.sheep=${sheepId}`);
      expect(old).toBeDefined();
      const same = await timedJob(stack, { name, version: 'v1' });
      // Pulled beforehand: the number is the stop of the old runner and the start of the new one.
      execFileSync('docker', ['pull', '-q', `${registry.address}/${name}:v2`]);
      const swap = await timedJob(stack, { name, version: 'v2' });
      expect(swap.status.status).toBe('done');
      expect((await (await fetch(`${stack.url}/jobs/${swap.jobId}/result`)).json()).model).toEqual({ name, version: 'v2' });
      await waitFor(() => !containers(`shepherd.sheep=${sheepId}`).includes(old as string), 10_000, 'the old container to go');
      expect(containers(`shepherd.sheep=${sheepId}`)).toHaveLength(1);
      console.log(`model switch, ${title}: ${swap.ms} ms submit→done (a job without a switch: ${same.ms} ms)`);
    } finally {
      await stack.close();
      removeContainers(sheepId);
    }
  });
});

describe('a job naming a missing image', () => {
  it('fails at the pull while the loaded runner keeps running, and the next job needs no reload', async () => {
    const sheepId = uniqueId('fs');
    const stack = await dockerStack(sheepId);
    try {
      expect((await timedJob(stack, { name: 'pid1', version: 'v1' })).status.status).toBe('done');
      const [loaded] = containers(`shepherd.sheep=${sheepId}`);
      const loads = await modelLoads(stack, sheepId);
      expect(loads).toBe(1);

      const missing = await timedJob(stack, { name: 'pid1', version: 'v9' });
      expect(missing.status.status).toBe('failed');
      expect((missing.status.error_details as { message: string }).message).toMatch(/^Could not pull 127\.0\.0\.1:\d+\/pid1:v9: no such image in the registry/);
      expect(running(loaded as string)).toBe(true);
      console.log(`a job naming a missing image failed after ${missing.ms} ms`);

      expect((await timedJob(stack, { name: 'pid1', version: 'v1' })).status.status).toBe('done');
      expect(containers(`shepherd.sheep=${sheepId}`)).toEqual([loaded]);
      expect(await modelLoads(stack, sheepId)).toBe(loads);
    } finally {
      await stack.close();
      removeContainers(sheepId);
    }
  });
});

describe('two deployments on one Docker engine', () => {
  it('label containers with their deployment, and a starting worker removes only its own', async () => {
    const sheepId = uniqueId('fs');
    const first = await dockerStack(sheepId);
    let second: Stack | undefined;
    try {
      expect((await timedJob(first, { name: 'pid1', version: 'v1' })).status.status).toBe('done');
      const [live] = containers(`shepherd.sheep=${sheepId}`, `shepherd.deployment=${first.config.redis.prefix}`);
      expect(live).toBeDefined();
      const loads = await modelLoads(first, sheepId);

      // Started after the first one's runner: its start-up cleanup runs now (its worker has beaten).
      second = await dockerStack(sheepId);
      expect(running(live as string)).toBe(true);
      expect((await timedJob(second, { name: 'pid1', version: 'v1' })).status.status).toBe('done');
      expect(containers(`shepherd.sheep=${sheepId}`, `shepherd.deployment=${second.config.redis.prefix}`)).toHaveLength(1);
      expect((await timedJob(first, { name: 'pid1', version: 'v1' })).status.status).toBe('done');
      expect(await modelLoads(first, sheepId)).toBe(loads);
    } finally {
      await second?.close();
      await first.close();
      removeContainers(sheepId);
    }
  });
});

describe('Runner.abort() on a bare runner that does not heed SIGTERM', () => {
  it('kills it after the sheep’s stop_timeout, fails the job in hand with the reason and reruns the one queued', async () => {
    const stopTimeoutMs = 1000;
    const host = new BareRunnerHost({
      sheepId: 'abort',
      // The sheep's own stop_timeout wins over worker.stop_timeout (the 10 s here).
      stopTimeoutMs: 10_000,
      config: {
        type: 'bare',
        port: await freePort(),
        devices: [],
        env: {},
        stdoutFile: undefined,
        stderrFile: undefined,
        workingDirectory: MODELS,
        command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'],
        stopTimeoutMs,
      },
    });
    const silent = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
    const runner = new Runner(host, { startTimeoutMs: 20_000, log: silent as unknown as ConstructorParameters<typeof Runner>[1]['log'] });
    const root = tempDir('abort-io');
    const job = (input: unknown): string => {
      const jobId = uniqueId('job');
      mkdirSync(join(root, jobId, 'inputs'), { recursive: true });
      mkdirSync(join(root, jobId, 'outputs'), { recursive: true });
      writeFileSync(join(root, jobId, 'inputs', 'input'), JSON.stringify(input));
      return jobId;
    };
    try {
      const live = await runner.ensure(echo('v1'));
      // On SIGTERM the echo runner finishes the job in hand first: a minute here.
      const long = job({ sleep_ms: 60_000 });
      const queued = job({});
      const inHand = runner.submit(live, long, root).catch((error: Error) => error);
      const behind = runner.submit(live, queued, root).catch((error: Error) => error);
      await new Promise((resolve) => setTimeout(resolve, 500)); // the runner is in the job
      expect(await runner.abort('job timeout', queued)).toBe(false); // not the job in hand: nothing stops

      const started = performance.now();
      expect(await runner.abort('job timeout', long)).toBe(true);
      const ms = Math.round(performance.now() - started);
      console.log(`abort() of a bare runner ignoring SIGTERM, stop_timeout ${stopTimeoutMs} ms: ended after ${ms} ms`);
      expect(ms).toBeGreaterThanOrEqual(stopTimeoutMs - 50);
      expect(ms).toBeLessThan(stopTimeoutMs + 4000);

      const stopped = await inHand;
      expect(stopped).toBeInstanceOf(RunnerStoppedError);
      expect(stopped).toMatchObject({ reason: 'job timeout', message: 'job timeout', exit: { signal: 'SIGKILL' } });
      const rerun = await behind;
      expect(rerun).toBeInstanceOf(RunnerDiedError);
      expect((rerun as RunnerDiedError).culprit).toBe(false);
      expect(runner.model).toBeNull();

      const fresh = await runner.ensure(echo('v1'));
      expect(fresh).not.toBe(live);
      expect(runner.modelLoads).toBe(2);
      await expect(runner.submit(fresh, job({}), root)).resolves.toEqual({ kind: 'done' });
    } finally {
      await runner.stop();
    }
  });
});
