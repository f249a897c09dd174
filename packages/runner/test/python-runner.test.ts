import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Dealer } from 'zeromq';
import { freePort, tempDir, waitFor } from '@shepherd/testing';
import { decodeMessage, encodeMessage, RunnerClient } from '../src';
import {
  killAll,
  makeJob,
  PYTHON_ECHO_CONFIG,
  PYTHON,
  pythonZmqAvailable,
  readOutput,
  REPO_ROOT,
  startPythonRunner,
  type RunnerProcess,
} from './runner-process';

// The Python runner module (packages/runner-python) with the Python echo example, on pyzmq.
// Needs Debian's python3-zmq under /usr/bin/python3 (scripts/setup.sh installs it): without it
// these tests fail rather than pass unseen.

if (!pythonZmqAvailable()) throw new Error('/usr/bin/python3 cannot import zmq: run scripts/setup.sh (apt-get install python3-zmq)');
const describePython = describe;

const root = tempDir('python-runner-io');
afterAll(async () => {
  await killAll();
  rmSync(root, { recursive: true, force: true });
});

async function startedRunner(): Promise<{ runner: RunnerProcess; client: RunnerClient; port: number }> {
  const port = await freePort();
  const runner = startPythonRunner(['-p', String(port), '-r', 'echo_runner:EchoRunner', PYTHON_ECHO_CONFIG]);
  const client = new RunnerClient({ port });
  client.connect();
  await client.waitListening(20_000);
  return { runner, client, port };
}

describePython('python3 -m shepherd_runner with the Python echo example', () => {
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
    const jobId = makeJob(root, { hello: 'world', files: { 'more/a.txt': 'A' } });
    await expect(client.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
    expect(JSON.parse(readOutput(root, jobId))).toEqual({
      result: { hello: 'world', files: { 'more/a.txt': 'A' } },
      model: { name: 'python-echo', version: 'v1' },
      pid: runner.child.pid,
    });
    expect(readOutput(root, jobId, 'more/a.txt')).toBe('A');
  });

  it('self.report_progress reaches a client that takes progress, ahead of the answer', async () => {
    const seen: [string, number, string | null][] = [];
    const taking = new RunnerClient({ port, onProgress: (...report) => seen.push(report) });
    try {
      taking.connect();
      await taking.waitListening(20_000);
      const jobId = makeJob(root, { progress_steps: 4, sleep_ms: 40 });
      await expect(taking.submit(jobId, root)).resolves.toEqual({ kind: 'done' });
      expect(seen).toEqual([1, 2, 3, 4].map((step) => [jobId, step / 4, `step ${step}/4`]));
    } finally {
      taking.close();
    }
  });

  it('answers a failing job with the Python exception and traceback', async () => {
    const jobId = makeJob(root, { fail: 'bad input' });
    const result = await client.submit(jobId, root);
    expect(result).toMatchObject({ kind: 'error', message: 'ValueError: bad input', exceptionType: 'ValueError' });
    expect(result.kind === 'error' && result.exceptionTraceback).toMatch(
      /^Traceback \(most recent call last\):\n[\s\S]*echo_runner\.py[\s\S]*ValueError: bad input\n$/,
    );
  });

  it('processes jobs submitted together in order', async () => {
    const jobs = [makeJob(root, { sleep_ms: 30, n: 1 }), makeJob(root, { n: 2 }), makeJob(root, { n: 3 })];
    const finished: string[] = [];
    await Promise.all(jobs.map((id) => client.submit(id, root).then(() => finished.push(id))));
    expect(finished).toEqual(jobs);
  });

  it('writes the same bytes as encodeMessage, non-ASCII included (both are Python json.dumps)', async () => {
    const dealer = new Dealer({ linger: 0, receiveTimeout: 20_000 });
    try {
      dealer.connect(`tcp://127.0.0.1:${port}`);
      // It reports progress, but not to a sheep that did not announce it takes it (the original's).
      const done = makeJob(root, { progress_steps: 2 });
      await dealer.send(`{"message": {"identity": "", "job_id": "${done}", "message_type": "InputMessage", "io_data_root": "${root}"}}`);
      const [doneReply] = await dealer.receive();
      expect(doneReply?.toString()).toBe(encodeMessage({ message_type: 'DoneMessage', job_id: done }).toString());

      const failed = makeJob(root, { fail: 'ünïcödé ✓ "quoted" \\ 😀' });
      await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: failed, io_data_root: root }));
      const [errorReply] = await dealer.receive();
      const message = decodeMessage(errorReply ?? '');
      expect(message).toMatchObject({ message_type: 'ErrorMessage', message: 'ValueError: ünïcödé ✓ "quoted" \\ 😀' });
      expect(errorReply?.toString()).toBe(encodeMessage(message).toString());
    } finally {
      dealer.close();
    }
  });

  it('report_progress writes what encodeMessage writes: clamped, message cut to 1,000 UTF-16 units, left out when none', () => {
    // _handle with a socket that records what it sends, as a sheep that announced it takes progress.
    const script = `
import json, sys, shepherd_runner as s
class Sock:
    def send_multipart(self, frames): sys.stdout.write(frames[1].decode() + "\\n")
class R(s.BaseRunner):
    def process_job(self, i, o, job_id):
        for args in [(0.25, "a"), (1.5, None), (-1, ""), (float("nan"), "x"), ("0.5", "\\u00e9" * 1500), (0.5, "\\U0001F600" * 600)]:
            self.report_progress(*args)
R({}, "c").report_progress(0.1, "outside a job")
frame = s.encode_message("InputMessage", "j", io_data_root="/nowhere")
s._handle(R({}, "c"), Sock(), [s.PROGRESS_PEER_PREFIX + b"x", frame])
`;
    const run = spawnSync(PYTHON, ['-c', script], {
      cwd: REPO_ROOT,
      env: { ...process.env, PYTHONPATH: join(REPO_ROOT, 'packages/runner-python'), PYTHONDONTWRITEBYTECODE: '1' },
      encoding: 'utf8',
    });
    expect(run.status).toBe(0);
    const progress = (progress: number, message?: string) => encodeMessage({ message_type: 'ProgressMessage', job_id: 'j', progress, message }).toString();
    expect(run.stdout.trimEnd().split('\n')).toEqual([
      progress(0.25, 'a'),
      progress(1),
      progress(0),
      progress(0.5, 'é'.repeat(1000)),
      progress(0.5, '😀'.repeat(500)),
      encodeMessage({ message_type: 'DoneMessage', job_id: 'j' }).toString(),
    ]);
    expect(run.stderr).toContain("job j: progress nan ignored: not a finite number");
  });

  it('ignores a malformed message and goes on serving', async () => {
    const dealer = new Dealer({ linger: 0, receiveTimeout: 20_000 });
    try {
      dealer.connect(`tcp://127.0.0.1:${port}`);
      await dealer.send('{not json');
      await dealer.send('{"message": {"job_id": "x", "message_type": "DoneMessage"}}');
      const jobId = makeJob(root, {});
      await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: jobId, io_data_root: root }));
      const [reply] = await dealer.receive();
      expect(decodeMessage(reply ?? '')).toMatchObject({ message_type: 'DoneMessage', job_id: jobId });
    } finally {
      dealer.close();
    }
  });
});

describePython('Python runner process life', () => {
  it('a runner that dies mid-job exits, and failAll rejects what was outstanding', async () => {
    const { runner, client } = await startedRunner();
    try {
      const outstanding = client.submit(makeJob(root, { exit: 4 }), root);
      await expect(runner.exited).resolves.toEqual({ code: 4, signal: null });
      client.failAll(new Error('runner exited with code 4'));
      await expect(outstanding).rejects.toThrow('runner exited with code 4');
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

  it('reads the runner class from the config when -r is not given', async () => {
    const port = await freePort();
    const runner = startPythonRunner(['-p', String(port), PYTHON_ECHO_CONFIG]);
    const client = new RunnerClient({ port });
    try {
      client.connect();
      await client.waitListening(20_000);
      await expect(client.submit(makeJob(root, 5), root)).resolves.toEqual({ kind: 'done' });
    } finally {
      client.close();
      await runner.kill();
    }
  });

  it('a missing config file exits 2 naming the path', async () => {
    const missing = join(root, 'nowhere', 'config.yaml');
    const runner = startPythonRunner([missing]);
    await expect(runner.exited).resolves.toEqual({ code: 2, signal: null });
    expect(runner.output()).toContain(`cannot read config file ${missing}`);
  });

  it('a config without a runner key and no -r exits 2 saying so', async () => {
    const config = join(tempDir('python-config'), 'config.yaml');
    writeFileSync(config, 'model: {name: x, version: v1}\n');
    const runner = startPythonRunner([config]);
    await expect(runner.exited).resolves.toEqual({ code: 2, signal: null });
    expect(runner.output()).toContain('no runner: give -r module:Class');
  });
});
