import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, tempDir } from '@shepherd/testing';
import { CLIENT_CLI, startStack, type Stack } from './stack';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a child process, asynchronously: the gateway answering it lives in this process. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLIENT_CLI, ...args], { env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('shepherd-client', () => {
  let stack: Stack;
  let env: Record<string, string>;
  const dir = tempDir('client-cli');
  beforeAll(async () => {
    stack = await startStack();
    env = { SHEPHERD_URL: stack.url };
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('submits a file, waits, saves the result, and prints plain lines off a terminal', async () => {
    writeFileSync(join(dir, 'request.json'), JSON.stringify({ n: 42 }));
    const out = join(dir, 'out');
    const run = await cli(['submit', '--model', 'echo:v1', '--input', join(dir, 'request.json'), '--wait', '--out', out], env);
    expect(run).toMatchObject({ code: 0 });
    const [jobId, statusLine] = run.stdout.trim().split('\n');
    expect(jobId).toMatch(/^j[a-z0-9]{23}$/);
    expect(JSON.parse(statusLine ?? '')).toMatchObject({ status: 'done' });
    expect(JSON.parse(readFileSync(join(out, 'output'), 'utf8')).result).toEqual({ n: 42 });
    expect(run.stderr).toContain(`inputs/input: 8 B`);
    expect(run.stderr).toContain(`${jobId} done on s1`);
    expect(run.stderr).toContain(`saved ${join(out, 'output')}`);
    expect(run.stderr).not.toContain('\r'); // no bar redraws without a terminal

    const status = await cli(['status', jobId ?? ''], env);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ status: 'done', model: { name: 'echo', version: 'v1' } });

    const list = await cli(['--url', stack.url, 'list', '--status', 'done'], {});
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n').map((line) => line.split('\t')[0])).toContain(jobId);
  });

  it('uploads several inputs under their base names, and takes a payload and a job id', async () => {
    writeFileSync(join(dir, 'input'), JSON.stringify({ files: { copy: 'x' } }));
    writeFileSync(join(dir, 'second.txt'), 'second');
    const run = await cli(['submit', '--model', 'echo:v1', '--job-id', 'clitwo', '--input', join(dir, 'input'), join(dir, 'second.txt'), '--wait'], env);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('inputs/second.txt: 6 B');
    const result = await cli(['result', 'clitwo', '--file', 'copy'], env);
    expect(result).toMatchObject({ code: 0, stdout: 'x' });
    const inline = await cli(['submit', '--model', 'echo:v1', '--payload', '{"p": 1}', '--wait'], env);
    expect(inline.code).toBe(0);
    const events = await cli(['events', inline.stdout.split('\n')[0] ?? ''], env);
    expect(events.code).toBe(0);
    expect(JSON.parse(events.stdout.trim().split('\n').at(-1) ?? '')).toMatchObject({ status: 'done', event: 'status' });
  });

  it('exits 1 for a failed or cancelled job, 2 for usage errors, 3 for server and network errors', async () => {
    const failed = await cli(['submit', '--model', 'echo:v1', '--payload', '{"fail": "no good"}', '--wait'], env);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/failed: .*no good/);

    const slow = await cli(['submit', '--model', 'echo:v1', '--payload', '{"sleep_ms": 10000}'], env);
    const slowId = slow.stdout.trim();
    expect((await cli(['wait', slowId, '--timeout', '0.2'], env)).code).toBe(4);
    expect((await cli(['cancel', slowId], env)).code).toBe(0);
    expect((await cli(['wait', slowId], env)).code).toBe(1);
    expect((await cli(['cancel', slowId], env)).code).toBe(3); // 409: finished already

    expect((await cli(['submit', '--payload', '{}'], env)).code).toBe(2);
    expect((await cli(['submit', '--model', 'echo', '--payload', '{}'], env)).code).toBe(2);
    expect((await cli(['submit', '--model', 'echo:v1', '--payload', '{}', '--job-id', 'Bad/Id'], env)).code).toBe(2);
    expect((await cli(['status'], env)).code).toBe(2);
    expect((await cli(['frobnicate'], env)).code).toBe(2);
    expect((await cli(['status', 'nosuchjob'], env)).code).toBe(3);
    const port = await freePort();
    const down = await cli(['status', 'x', '--url', `http://127.0.0.1:${port}`], env);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('fetch failed');
  }, 60_000);
});
