import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import {
  buildEchoRunnerImage,
  dockerAnswers,
  freePort,
  pushImage,
  startRegistry,
  uniqueId,
  waitFor,
  type RegistryHandle,
} from '@shepherd/testing';
import { containerHostConfig } from '@shepherd/worker';
import { echo, echoSheep, startStack, type Stack } from './harness';

// A real Docker engine and a real registry: .ci/run starts dockerd, the
// test builds its images from the host's node and pushes them.
jest.setTimeout(120_000); // pulls and container starts take seconds here
const AUTH = { username: 'shepherd', password: 'секрет-123' };
let registry: RegistryHandle;
let authRegistry: RegistryHandle;

beforeAll(async () => {
  if (!dockerAnswers()) throw new Error('No Docker engine answers: run scripts/setup.sh (it starts dockerd)');
  buildEchoRunnerImage('local/echo-test:v1', echo('v1'));
  buildEchoRunnerImage('local/echo-test:v2', echo('v2'));
  buildEchoRunnerImage('local/echo-test:crash', { name: 'crash', version: 'v1' }, { crash: true });
  registry = await startRegistry();
  authRegistry = await startRegistry(AUTH);
  pushImage('local/echo-test:v1', `${registry.address}/echo:v1`);
  pushImage('local/echo-test:v2', `${registry.address}/echo:v2`);
  pushImage('local/echo-test:crash', `${registry.address}/crash:v1`);
  pushImage('local/echo-test:v1', `${authRegistry.address}/echo:v1`, AUTH);
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  await authRegistry?.stop();
});

function containers(label: string): string[] {
  return execFileSync('docker', ['ps', '-aq', '--filter', `label=${label}`]).toString().split('\n').filter(Boolean);
}

function dockerSheep(port: number, extra: Record<string, unknown> = {}) {
  return { type: 'docker', port, autoremove_containers: true, ...extra };
}

describe('a docker sheep', () => {
  let stack: Stack;
  let sheepId: string;
  beforeAll(async () => {
    sheepId = uniqueId('d');
    stack = await startStack({ registry: { url: `http://${registry.address}` }, sheep: { [sheepId]: dockerSheep(await freePort()) } });
  }, 60_000);
  afterAll(async () => {
    await stack.close();
    for (const id of containers(`shepherd.sheep=${sheepId}`)) execFileSync('docker', ['rm', '-f', id]);
  });

  it('pulls the image and runs a job end to end in a labelled container', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{"in": "docker"}' });
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    expect(await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()).toMatchObject({ result: { in: 'docker' }, model: echo('v1') });
    expect(containers(`shepherd.model=echo:v1`).length).toBeGreaterThanOrEqual(1);
  });

  it('switches models by replacing the container', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v2'), payload: '{}' });
    expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
    expect((await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()).model).toEqual(echo('v2'));
    await waitFor(() => containers(`shepherd.sheep=${sheepId}`).length === 1, 10_000, 'the old container to go');
  });

  it('fails a job whose image the registry lacks, and goes on', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v9'), payload: '{}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect((status.error_details as { message: string }).message).toMatch(/^Could not pull 127\.0\.0\.1:\d+\/echo:v9: no such image in the registry/);
    const next = uniqueId('job');
    await stack.submit({ job_id: next, model: echo('v1'), payload: '{}' });
    expect((await stack.waitReady(next)).status).toBe('done');
  });

  it('runs a job again when its container is killed mid-job', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{"sleep_ms": 3000}' });
    await waitFor(async () => (await (await fetch(`${stack.url}/jobs/${jobId}/status`)).json()).status === 'processing', 30_000, 'processing');
    const [container] = containers(`shepherd.sheep=${sheepId}`);
    execFileSync('docker', ['kill', container as string]);
    expect((await stack.waitReady(jobId)).status).toBe('done');
  });

  it('fails a job fast when the runner dies on start, with its last log lines', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: { name: 'crash', version: 'v1' }, payload: '{}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect((status.error_details as { message: string }).message).toMatch(/exited with code 3; its stderr ended with:\nmodel weights missing/);
  });

  it('removes containers its sheep left behind when its worker starts', async () => {
    await stack.stopWorker(sheepId, 'SIGKILL');
    const deployment = `shepherd.deployment=${stack.config.redis.prefix}`;
    const stale = execFileSync('docker', ['create', '--label', `shepherd.sheep=${sheepId}`, '--label', deployment, 'local/echo-test:v1']).toString().trim();
    expect(containers(`shepherd.sheep=${sheepId}`)).toContain(stale.slice(0, 12));
    stack.startWorker(sheepId);
    await waitFor(() => !containers(`shepherd.sheep=${sheepId}`).includes(stale.slice(0, 12)), 20_000, 'the stale container to go');
  });
});

describe('docker sheep and the registry password', () => {
  it('pulls with the right credentials and fails the job, saying so, with wrong ones', async () => {
    const good = uniqueId('d');
    const bad = uniqueId('d');
    const url = `http://${authRegistry.address}`;
    const right = await startStack({ registry: { url, ...AUTH }, sheep: { [good]: dockerSheep(await freePort()) } });
    try {
      const jobId = uniqueId('job');
      await right.submit({ job_id: jobId, model: echo('v1'), payload: '{}' });
      expect((await right.waitReady(jobId)).status).toBe('done');
    } finally {
      await right.close();
      for (const id of containers(`shepherd.sheep=${good}`)) execFileSync('docker', ['rm', '-f', id]);
    }
    execFileSync('docker', ['rmi', '-f', `${authRegistry.address}/echo:v1`]);
    const wrong = await startStack({ registry: { url, username: AUTH.username, password: 'wrong' }, sheep: { [bad]: dockerSheep(await freePort()) } });
    try {
      const jobId = uniqueId('job');
      await wrong.submit({ job_id: jobId, model: echo('v1'), payload: '{}' });
      const status = await wrong.waitReady(jobId);
      expect(status.status).toBe('failed');
      expect((status.error_details as { message: string }).message).toMatch(/unauthorized \(check registry\.username and registry\.password\)/);
      expect(JSON.stringify(status)).not.toContain('wrong');
    } finally {
      await wrong.close();
    }
  });
});

describe('GPU sheep', () => {
  it('asks Docker for the devices as an nvidia device request', () => {
    const config = containerHostConfig(
      { type: 'docker', port: 9001, devices: ['/dev/nvidia0', '/dev/nvidia2'], env: {}, stdoutFile: undefined, stderrFile: undefined, autoremoveContainers: true, pull: 'missing', memory: 1024, cpus: 1.5, networkMode: 'bridge', stopTimeoutMs: 1000 },
      '/data/s1',
      ['0', '2'],
    );
    expect(config).toEqual({
      PortBindings: { '9999/tcp': [{ HostIp: '127.0.0.1', HostPort: '9001' }] },
      Binds: ['/data/s1:/data/s1'],
      AutoRemove: true,
      Init: true,
      Privileged: false,
      Memory: 1024,
      NanoCpus: 1.5e9,
      NetworkMode: 'bridge',
      DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: ['0', '2'], Capabilities: [['gpu']] }],
    });
  });

  it('fails the job with the engine’s own error where there is no GPU', async () => {
    const sheepId = uniqueId('g');
    const stack = await startStack({ registry: { url: `http://${registry.address}` }, sheep: { [sheepId]: dockerSheep(await freePort(), { devices: ['/dev/nvidia0'] }) } });
    try {
      const jobId = uniqueId('job');
      await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{}' });
      const status = await stack.waitReady(jobId);
      expect(status.status).toBe('failed');
      expect((status.error_details as { message: string }).message).toMatch(/could not select device driver "nvidia" with capabilities: \[\[gpu\]\]/);
    } finally {
      await stack.close();
      for (const id of containers(`shepherd.sheep=${sheepId}`)) execFileSync('docker', ['rm', '-f', id]);
    }
  });
});

describe('a long pull on one sheep', () => {
  it('does not delay another sheep’s jobs', async () => {
    const big = `${registry.address}/big:v1`;
    // ~150 MB of random bytes: a pull that takes a while on this machine.
    execFileSync('docker', ['build', '-q', '-t', 'local/echo-test:big', '-'], {
      input: `FROM local/echo-test:v1\nRUN ["node", "-e", "require('fs').writeFileSync('/big', require('crypto').randomBytes(150e6))"]\n`,
    });
    pushImage('local/echo-test:big', big);
    const slow = uniqueId('slow');
    const quick = uniqueId('quick');
    const stack = await startStack({
      registry: { url: `http://${registry.address}` },
      sheep: { [slow]: dockerSheep(await freePort()), [quick]: echoSheep(await freePort()) },
    });
    try {
      const pulling = uniqueId('job');
      await stack.submit({ job_id: pulling, model: { name: 'big', version: 'v1' }, payload: '{}', sheep_id: slow });
      const quickJobs = Array.from({ length: 5 }, () => uniqueId('job'));
      for (const jobId of quickJobs) await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{}', sheep_id: quick });
      const quickDone = Promise.all(quickJobs.map((jobId) => stack.waitReady(jobId))).then(() => Date.now());
      const pullDone = stack.waitReady(pulling).then(() => Date.now());
      expect(await quickDone).toBeLessThan(await pullDone);
      expect((await (await fetch(`${stack.url}/jobs/${pulling}/status`)).json()).status).toBe('done');
    } finally {
      await stack.close();
      for (const id of containers(`shepherd.sheep=${slow}`)) execFileSync('docker', ['rm', '-f', id]);
      execFileSync('docker', ['rmi', '-f', big, 'local/echo-test:big']);
    }
  });
});
