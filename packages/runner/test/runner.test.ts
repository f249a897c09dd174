import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Dealer } from 'zeromq';
import { freePort, tempDir, waitFor } from '@shepherd/testing';
import { encodeMessage, RunnerClient } from '../src';
import {
  ECHO_V1_CONFIG,
  ensureBuilt,
  killAll,
  makeJob,
  readOutput,
  startNodeRunner,
  type RunnerProcess,
} from './runner-process';

// Real `shepherd-runner` processes serving the echo example, driven through RunnerClient.

const root = tempDir('runner-io');

beforeAll(() => ensureBuilt());
afterAll(async () => {
  await killAll();
  rmSync(root, { recursive: true, force: true });
});

async function startedRunner(): Promise<{ runner: RunnerProcess; client: RunnerClient; port: number }> {
  const port = await freePort();
  const runner = startNodeRunner(['-p', String(port), ECHO_V1_CONFIG]);
  const client = new RunnerClient({ port });
  client.connect();
  await client.waitListening(20_000);
  return { runner, client, port };
}

function writeConfig(text: string): string {
  const file = join(tempDir('runner-config'), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

describe('shepherd-runner with the echo example', () => {
  let runner: RunnerProcess;
  let client: RunnerClient;
  let port: number;

  beforeAll(async () => {
    ({ runner, client, port } = await startedRunner());
  });
  afterAll(async () => {
    client.close();
    await runner.kill();
  });

  it('processes a job and writes outputs/output', async () => {
    const jobId = makeJob(root, { hello: 'world' });
    await expect(client.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
    expect(JSON.parse(readOutput(root, jobId))).toEqual({
      result: { hello: 'world' },
      model: { name: 'echo', version: 'v1' },
      pid: runner.child.pid,
      started_ms: expect.any(Number),
      finished_ms: expect.any(Number),
    });
  });

  it('writes extra files under outputs/', async () => {
    const jobId = makeJob(root, { files: { 'extra/notes.txt': 'a note' } });
    await expect(client.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
    expect(readOutput(root, jobId, 'extra/notes.txt')).toBe('a note');
  });

  it('answers a job that throws with an ErrorMessage', async () => {
    const jobId = makeJob(root, { fail: 'bad input' });
    const result = await client.submit(jobId, root);
    expect(result).toMatchObject({ kind: 'error', message: 'Error: bad input', exceptionType: 'Error' });
    expect(result.kind === 'error' && result.exceptionTraceback).toMatch(/^Error: bad input\n\s+at .*echo-runner/);
  });

  it('answers input that is not JSON with an ErrorMessage', async () => {
    const jobId = makeJob(root, 'not json');
    await expect(client.submit(jobId, root)).resolves.toMatchObject({ kind: 'error', exceptionType: 'SyntaxError' });
  });

  it('processes jobs submitted together one at a time, in order', async () => {
    const jobs = [makeJob(root, { sleep_ms: 50, n: 1 }), makeJob(root, { n: 2 }), makeJob(root, { sleep_ms: 20, n: 3 })];
    const finished: string[] = [];
    const results = await Promise.all(jobs.map((id) => client.submit(id, root).then((r) => (finished.push(id), r))));
    expect(results).toEqual([{ kind: 'done' }, { kind: 'done' }, { kind: 'done' }]);
    expect(finished).toEqual(jobs);
    expect(jobs.map((id) => JSON.parse(readOutput(root, id)).result.n)).toEqual([1, 2, 3]);
  });

  it('rejects a second submit of a job still in the runner', async () => {
    const jobId = makeJob(root, { sleep_ms: 50 });
    const first = client.submit(jobId, root);
    await expect(client.submit(jobId, root)).rejects.toMatchObject({ code: 'duplicate-job' });
    await expect(first).resolves.toEqual({ kind: 'done' });
  });

  it('reports progress with this.progress() when a job asks, to a client that takes it', async () => {
    const seen: [string, number, string | null][] = [];
    const taking = new RunnerClient({ port, onProgress: (...report) => seen.push(report) });
    try {
      taking.connect();
      await taking.waitListening(20_000);
      const jobId = makeJob(root, { progress_steps: 3, sleep_ms: 30 });
      await expect(taking.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
      expect(seen).toEqual([
        [jobId, 1 / 3, 'step 1/3'],
        [jobId, 2 / 3, 'step 2/3'],
        [jobId, 1, 'step 3/3'],
      ]);
      expect(JSON.parse(readOutput(root, jobId)).progress_sent_ms).toHaveLength(3);
    } finally {
      taking.close();
    }
  });

  it('speaks the original bytes: a raw DEALER gets the reply the original runner sends', async () => {
    const dealer = new Dealer({ linger: 0, receiveTimeout: 20_000 });
    try {
      dealer.connect(`tcp://127.0.0.1:${port}`);
      // A job that reports progress: the original sheep (no announcing routing id) must see none of it.
      const done = makeJob(root, { raw: true, progress_steps: 2 });
      await dealer.send(`{"message": {"identity": "", "job_id": "${done}", "message_type": "InputMessage", "io_data_root": "${root}"}}`);
      const [reply] = await dealer.receive();
      expect(reply?.toString()).toBe(`{"message": {"identity": "", "job_id": "${done}", "message_type": "DoneMessage"}}`);

      const failed = makeJob(root, { fail: 'nope' });
      await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: failed, io_data_root: root }));
      const [errorReply] = await dealer.receive();
      const parsed = JSON.parse(errorReply?.toString() ?? '') as { message: Record<string, string> };
      expect(Object.keys(parsed)).toEqual(['message']);
      expect(Object.keys(parsed.message)).toEqual(['identity', 'job_id', 'message_type', 'message', 'exception_type', 'exception_traceback']);
      expect(parsed.message).toMatchObject({ identity: '', job_id: failed, message_type: 'ErrorMessage', message: 'Error: nope' });
    } finally {
      dealer.close();
    }
  });

  it('ignores malformed messages and goes on serving', async () => {
    const dealer = new Dealer({ linger: 0, receiveTimeout: 20_000 });
    try {
      dealer.connect(`tcp://127.0.0.1:${port}`);
      await dealer.send('not json');
      await dealer.send(['two', 'frames']);
      await dealer.send('{"message": {"job_id": "x", "message_type": "DoneMessage"}}');
      const jobId = makeJob(root, {});
      await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: jobId, io_data_root: root }));
      const [reply] = await dealer.receive();
      expect(reply?.toString()).toContain(`"job_id": "${jobId}", "message_type": "DoneMessage"`);
      expect(runner.child.exitCode).toBeNull();
    } finally {
      dealer.close();
    }
  });
});

describe('runner process life', () => {
  it('waitListening waits for the runner to bind, then jobs flow', async () => {
    const port = await freePort();
    const client = new RunnerClient({ port });
    try {
      client.connect();
      let listening = false;
      const waiting = client.waitListening(20_000).then(() => (listening = true));
      await expect(client.waitListening(200)).rejects.toThrow(`No runner listening at tcp://127.0.0.1:${port} after 200 ms`);
      expect(listening).toBe(false);

      const runner = startNodeRunner(['-p', String(port), ECHO_V1_CONFIG]);
      await waiting;
      await waitFor(() => runner.output().includes(`listening on tcp://0.0.0.0:${port}`), 10_000, 'the runner to log its bind');
      const jobId = makeJob(root, { late: true });
      await expect(client.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
    } finally {
      client.close();
    }
  });

  it('waitListening rejects clearly when aborted or when the client closes', async () => {
    const client = new RunnerClient({ port: await freePort() });
    client.connect();
    const controller = new AbortController();
    const aborted = client.waitListening(20_000, controller.signal);
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'aborted', message: expect.stringMatching(/aborted/) });
    const closing = client.waitListening(20_000);
    client.close();
    await expect(closing).rejects.toMatchObject({ code: 'closed' });
  });

  it('a runner that dies mid-job exits, and failAll rejects what was outstanding', async () => {
    const { runner, client } = await startedRunner();
    try {
      const outstanding = client.submit(makeJob(root, { exit: 3 }), root);
      await expect(runner.exited).resolves.toEqual({ code: 3, signal: null });
      client.failAll(new Error('runner exited with code 3'));
      await expect(outstanding).rejects.toThrow('runner exited with code 3');
      expect(client.inFlight).toBe(0);
    } finally {
      client.close();
      await runner.kill();
    }
  });

  it('SIGTERM lets the job in hand finish, then exits 0', async () => {
    const { runner, client } = await startedRunner();
    try {
      const jobId = makeJob(root, { sleep_ms: 300 });
      const result = client.submit(jobId, root);
      await waitFor(() => runner.output().includes(`job ${jobId}: started`), 10_000, 'the job to start');
      runner.child.kill('SIGTERM');
      await expect(result).resolves.toEqual({ kind: 'done' });
      await expect(runner.exited).resolves.toEqual({ code: 0, signal: null });
    } finally {
      client.close();
      await runner.kill();
    }
  });

  it('close() rejects outstanding submits', async () => {
    const { runner, client } = await startedRunner();
    try {
      const outstanding = client.submit(makeJob(root, { sleep_ms: 200 }), root);
      client.close();
      await expect(outstanding).rejects.toMatchObject({ code: 'closed' });
    } finally {
      await runner.kill();
    }
  });

  it('a missing config file exits 2 naming the path', async () => {
    const missing = join(root, 'nowhere', 'config.yaml');
    const runner = startNodeRunner(['-p', String(await freePort()), missing]);
    await expect(runner.exited).resolves.toEqual({ code: 2, signal: null });
    expect(runner.output()).toContain(`cannot read config file ${missing} (ENOENT)`);
  });

  it('a config without a runner key and no -r exits 2 saying so', async () => {
    const config = writeConfig('model: {name: echo, version: v1}\n');
    const runner = startNodeRunner(['-p', String(await freePort()), config]);
    await expect(runner.exited).resolves.toEqual({ code: 2, signal: null });
    expect(runner.output()).toMatch(/no runner: give -r RUNNER or a "runner:" key/);
  });

  it('-r names the runner module, resolved from the working directory', async () => {
    const port = await freePort();
    const config = writeConfig('other: 1\n');
    const runner = startNodeRunner(['-p', String(port), '-s', 'predict', '-r', './examples/runners/echo/dist/echo-runner.js', config]);
    const client = new RunnerClient({ port });
    try {
      client.connect();
      await client.waitListening(20_000);
      const jobId = makeJob(root, 1);
      await expect(client.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
      expect(JSON.parse(readOutput(root, jobId))).toMatchObject({ result: 1, model: null });
    } finally {
      client.close();
      await runner.kill();
    }
  });
});
