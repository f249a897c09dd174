import { afterAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { deleteKeys, freePort, REDIS_URL, tempDir, uniqueId, waitFor } from '@shepherd/testing';

describe('the gateway on SIGTERM', () => {
  const prefix = uniqueId('stop');
  afterAll(async () => {
    await deleteKeys(`${prefix}:`);
  });

  it('stops accepting, answers what is in flight, then exits', async () => {
    const dir = tempDir('gateway-stop');
    const root = join(dir, 'storage');
    const config = join(dir, 'shepherd.yml');
    writeFileSync(
      config,
      `storage: {root: ${root}}\nredis: {url: ${REDIS_URL}, prefix: ${prefix}}\ngateway: {shutdown_grace: 3s}\nsheep: {}\n`,
    );
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [join(__dirname, '../dist/cli.js'), '-c', config, '-p', String(port)], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
    try {
      await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 20_000, 'the gateway');

      // In flight when the signal comes: a long poll on a queued job (no
      // worker runs it), an upload whose body is half sent and will be
      // finished, and one whose client stalls for good.
      const started = await fetch(`${url}/start-job`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ job_id: 'queued-job', model: { name: 'm', version: '1' }, payload: '{}' }),
      });
      expect(started.status).toBe(200);
      const waiting = fetch(`${url}/jobs/queued-job/wait_ready`);
      const upload = startUpload(`${url}/jobs/upload-job/inputs/input`);
      const stalled = startUpload(`${url}/jobs/stalled-job/inputs/input`);
      upload.request.write('{"first": "half", ');
      stalled.request.write('{"never": ');
      const tmp = join(root, '.tmp');
      const parts = () => (existsSync(tmp) ? readdirSync(tmp).filter((name) => name.endsWith('.part')).length : 0);
      await waitFor(() => parts() === 2, 10_000, 'both uploads to reach storage');

      child.kill('SIGTERM');

      // The waiter is answered with the status the job has now...
      const waited = await waiting;
      expect(waited.status).toBe(200);
      expect(await waited.json()).toMatchObject({ status: 'queued' });
      // ...no new connection is taken...
      await waitFor(() => fetch(`${url}/health`).then(() => false, () => true), 10_000, 'the listener to close');
      // ...and the upload in flight still completes and is stored whole.
      upload.request.end('"second": "half"}');
      const answer = await upload.answer;
      expect(answer).toEqual({ status: 201 });
      expect(JSON.parse(readFileSync(join(root, 'upload-job/inputs/input'), 'utf8'))).toEqual({ first: 'half', second: 'half' });

      // The stalled client holds the process only for gateway.shutdown_grace:
      // its connection is cut and nothing of its file becomes visible.
      expect(await exited).toBe('SIGTERM');
      await expect(stalled.answer).rejects.toThrow(/socket hang up|ECONNRESET/);
      expect(existsSync(join(root, 'stalled-job/inputs/input'))).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

function startUpload(url: string) {
  const upload = request(url, { method: 'PUT' });
  const answer = new Promise<{ status: number }>((resolve, reject) => {
    upload.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    upload.on('error', reject);
  });
  answer.catch(() => undefined); // awaited later; not an unhandled rejection meanwhile
  return { request: upload, answer };
}
