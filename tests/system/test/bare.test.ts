import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { cudaDevices } from '@shepherd/worker';
import { echo, RUNNER_CLI, startStack, MODELS, type Stack, useFreePorts } from './harness';

const port = useFreePorts(1);

describe('bare sheep runner process', () => {
  let stack: Stack;
  beforeAll(async () => {
    process.env.STACK_LOGS = tempDir('stack-logs'); // used as ${STACK_LOGS} in the config
    stack = await startStack({
      sheep: {
        gpu: {
          type: 'bare',
          port: port(0),
          working_directory: MODELS,
          devices: ['/dev/nvidia1', '/dev/nvidia3'],
          env: { EXTRA: 'yes' },
          stdout_file: '${STACK_LOGS}/out/stdout.txt',
          stderr_file: '${STACK_LOGS}/err/stderr.txt',
          // A command override with every placeholder; the shell records what the runner got.
          command: [
            '/bin/sh',
            '-c',
            `echo "cuda=$$CUDA_VISIBLE_DEVICES extra=$$EXTRA args=$0,$1,$2"; echo to-stderr >&2; exec "${process.execPath}" "${RUNNER_CLI}" -p {port} {config_path}`,
            '{model_name}',
            '{model_version}',
            '{port}',
          ],
        },
      },
    });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('gets CUDA_VISIBLE_DEVICES from devices, env, placeholders, and appends its output to the files', async () => {
    const jobId = uniqueId('job');
    await stack.submit({ job_id: jobId, model: echo('v2'), payload: '{}' });
    expect((await stack.waitReady(jobId)).status).toBe('done');
    const stdout = await waitFor(() => readFileSync(join(process.env.STACK_LOGS as string, 'out/stdout.txt'), 'utf8'), 5000, 'stdout');
    expect(stdout).toContain(`cuda=1,3 extra=yes args=echo,v2,${port(0)}`);
    expect(readFileSync(join(process.env.STACK_LOGS as string, 'err/stderr.txt'), 'utf8')).toContain('to-stderr');
  });
});

describe('device names', () => {
  it('maps /dev/nvidiaN to N and keeps other names', () => {
    expect(cudaDevices(['/dev/nvidia0', '/dev/nvidia12', 'GPU-abc'])).toBe('0,12,GPU-abc');
  });
});
