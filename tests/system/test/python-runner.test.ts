import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { uniqueId } from '@shepherd/testing';
import { MODELS, REPO, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(1);

const model = { name: 'python-echo', version: 'v1' };

describe('a bare sheep with the Python runner (pyzmq)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      debug: true,
      sheep: {
        py: {
          type: 'bare',
          port: port(0),
          working_directory: MODELS,
          env: { PYTHONPATH: [join(REPO, 'packages/runner-python'), join(REPO, 'examples/runners/python-echo')].join(':') },
          command: ['/usr/bin/python3', '-m', 'shepherd_runner', '-p', '{port}', '-r', 'echo_runner:EchoRunner', '{config_path}'],
        },
      },
    });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('runs a job to its result', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model, payload: '{"hello": "python"}' });
    expect((await stack.waitReady(jobId)).status).toBe('done');
    expect(await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()).toMatchObject({ result: { hello: 'python' } });
  });

  it('fails a job with the Python exception, type and traceback', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model, payload: '{"fail": "no good"}' });
    const status = await stack.waitReady(jobId);
    expect(status.status).toBe('failed');
    expect(status.error_details).toMatchObject({ exception_type: expect.stringMatching(/Error/) });
    expect((status.error_details as { exception_traceback: string }).exception_traceback).toContain('Traceback (most recent call last)');
  });
});
