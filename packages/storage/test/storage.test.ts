import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import type { JobStatus } from '@shepherd/contracts';
import { startS3Server, tempDir, uniqueId, type S3ServerHandle } from '@shepherd/testing';
import {
  createStorage,
  FileNotFoundError,
  FilesystemStorage,
  InvalidPathError,
  JobExistsError,
  JobNotFoundError,
  type JobStorage,
} from '../src';
import { bodyOf, brokenStream, readAll } from './streams';

// One contract, three backends: whatever the gateway and worker rely on must
// hold for each of them.

let s3: S3ServerHandle;
const roots: string[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
});

afterAll(async () => {
  await s3?.stop();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

const backends: Array<{ name: string; create: () => JobStorage }> = [
  {
    name: 'filesystem',
    create: () => {
      const root = tempDir('storage-fs');
      roots.push(root);
      return new FilesystemStorage(root);
    },
  },
  {
    name: 's3 bucket-per-job',
    create: () =>
      createStorage({ backend: 's3', url: s3.url, accessKey: s3.accessKey, secretKey: s3.secretKey, layout: 'bucket-per-job' }),
  },
  {
    name: 's3 single-bucket',
    create: () =>
      createStorage({
        backend: 's3',
        url: s3.url,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        layout: 'single-bucket',
        bucket: uniqueId('bucket'),
      }),
  },
];

const status: JobStatus = {
  status: 'queued',
  model: { name: 'team/resnet', version: '1.0' },
  error_details: null,
  enqueued_at: '2026-11-25T10:00:00.000Z',
  processing_started_at: null,
  finished_at: null,
};

describe.each(backends)('$name storage', (backend) => {
  let storage: JobStorage;
  const jobs: string[] = [];

  beforeAll(() => {
    storage = backend.create();
  });

  afterAll(async () => {
    for (const jobId of jobs) await storage.deleteJob(jobId);
    await storage.close();
  });

  async function newJob(): Promise<string> {
    const jobId = uniqueId('job');
    jobs.push(jobId);
    await storage.createJob(jobId);
    return jobId;
  }

  async function put(jobId: string, folder: 'inputs' | 'outputs', path: string, data: string | Buffer): Promise<void> {
    const { body, size } = bodyOf(data);
    await storage.putFile(jobId, folder, path, body, size);
  }

  async function get(jobId: string, folder: 'inputs' | 'outputs', path: string): Promise<{ data: Buffer; size: number }> {
    const file = await storage.getFile(jobId, folder, path);
    return { data: await readAll(file.stream), size: file.size };
  }

  it('answers ping', async () => {
    await expect(storage.ping()).resolves.toBeUndefined();
  });

  it('creates a job once', async () => {
    const jobId = uniqueId('job');
    jobs.push(jobId);
    expect(await storage.jobExists(jobId)).toBe(false);
    await storage.createJob(jobId);
    expect(await storage.jobExists(jobId)).toBe(true);
    await expect(storage.createJob(jobId)).rejects.toThrow(JobExistsError);
  });

  it('round-trips files as streams, nested and large', async () => {
    const jobId = await newJob();
    const big = randomBytes(1024 * 1024 + 17);
    await put(jobId, 'inputs', 'input', 'hello');
    await put(jobId, 'inputs', 'images/a/b.png', 'nested');
    await put(jobId, 'outputs', 'big.bin', big);

    expect(await get(jobId, 'inputs', 'input')).toEqual({ data: Buffer.from('hello'), size: 5 });
    expect((await get(jobId, 'inputs', 'images/a/b.png')).data.toString()).toBe('nested');
    const large = await get(jobId, 'outputs', 'big.bin');
    expect(large.size).toBe(big.length);
    expect(large.data.equals(big)).toBe(true);

    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['images/a/b.png', 'input']);
    expect(await storage.listFiles(jobId, 'outputs')).toEqual(['big.bin']);
  });

  it('lists an empty folder as empty and sorts paths', async () => {
    const jobId = await newJob();
    expect(await storage.listFiles(jobId, 'outputs')).toEqual([]);
    for (const path of ['b', 'a/z', 'a/b/c', 'C', '.hidden']) await put(jobId, 'outputs', path, path);
    expect(await storage.listFiles(jobId, 'outputs')).toEqual(['.hidden', 'C', 'a/b/c', 'a/z', 'b']);
    expect(await storage.listFiles(jobId, 'inputs')).toEqual([]);
  });

  it('replaces a file', async () => {
    const jobId = await newJob();
    await put(jobId, 'inputs', 'input', 'first');
    await put(jobId, 'inputs', 'input', 'second version');
    expect((await get(jobId, 'inputs', 'input')).data.toString()).toBe('second version');
  });

  it('reports a missing file', async () => {
    const jobId = await newJob();
    await put(jobId, 'inputs', 'input', 'x');
    await expect(storage.getFile(jobId, 'inputs', 'nope')).rejects.toThrow(FileNotFoundError);
    await expect(storage.getFile(jobId, 'outputs', 'input')).rejects.toThrow(FileNotFoundError);
    await expect(storage.getFile(jobId, 'inputs', 'input/below')).rejects.toThrow(FileNotFoundError);
  });

  it('reports a missing job', async () => {
    const jobId = uniqueId('missing');
    expect(await storage.jobExists(jobId)).toBe(false);
    await expect(put(jobId, 'inputs', 'input', 'x')).rejects.toThrow(JobNotFoundError);
    await expect(storage.getFile(jobId, 'inputs', 'input')).rejects.toThrow(JobNotFoundError);
    await expect(storage.listFiles(jobId, 'inputs')).rejects.toThrow(JobNotFoundError);
    await expect(storage.writeStatus(jobId, status)).rejects.toThrow(JobNotFoundError);
    expect(await storage.readStatus(jobId)).toBeNull();
    await expect(storage.deleteJob(jobId)).resolves.toBeUndefined();
    // None of these may have brought the job into being.
    expect(await storage.jobExists(jobId)).toBe(false);
  });

  it('round-trips the status record', async () => {
    const jobId = await newJob();
    expect(await storage.readStatus(jobId)).toBeNull();
    await storage.writeStatus(jobId, status);
    expect(await storage.readStatus(jobId)).toEqual(status);
    const failed: JobStatus = {
      ...status,
      status: 'failed',
      error_details: { message: 'boom', exception_type: 'ValueError', exception_traceback: 'Traceback...' },
      finished_at: '2026-11-25T10:00:05.000+01:00',
    };
    await storage.writeStatus(jobId, failed);
    expect(await storage.readStatus(jobId)).toEqual(failed);
    // The status record is not a file of either folder.
    expect(await storage.listFiles(jobId, 'inputs')).toEqual([]);
  });

  it('deletes the status record alone, keeping the inputs', async () => {
    const jobId = await newJob();
    await put(jobId, 'inputs', 'input', 'kept');
    await storage.writeStatus(jobId, status);
    await storage.deleteStatus(jobId);
    expect(await storage.readStatus(jobId)).toBeNull();
    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['input']);
    await expect(storage.deleteStatus(jobId)).resolves.toBeUndefined();
    await expect(storage.deleteStatus('never-made-job')).resolves.toBeUndefined();
  });

  it('deletes a job with everything in it, and the id can be used again', async () => {
    const jobId = await newJob();
    await put(jobId, 'inputs', 'input', 'x');
    await put(jobId, 'outputs', 'deep/er/out', 'y');
    await storage.writeStatus(jobId, status);

    await storage.deleteJob(jobId);
    expect(await storage.jobExists(jobId)).toBe(false);
    expect(await storage.readStatus(jobId)).toBeNull();
    await expect(storage.listFiles(jobId, 'inputs')).rejects.toThrow(JobNotFoundError);

    await storage.createJob(jobId);
    expect(await storage.listFiles(jobId, 'inputs')).toEqual([]);
    expect(await storage.listFiles(jobId, 'outputs')).toEqual([]);
    expect(await storage.readStatus(jobId)).toBeNull();
  });

  it('refuses paths that climb out of the job, and reads nothing outside', async () => {
    const victim = await newJob();
    await put(victim, 'inputs', 'secret', 'secret data');
    const jobId = await newJob();
    const bad = ['../x', `../../${victim}/inputs/secret`, `a/../../../${victim}/inputs/secret`, '/etc/passwd', 'a//b', '..\\x', '.', 'a\0b', ''];
    for (const path of bad) {
      await expect(storage.getFile(jobId, 'inputs', path)).rejects.toThrow(InvalidPathError);
      await expect(put(jobId, 'inputs', path, 'overwrite')).rejects.toThrow(InvalidPathError);
    }
    for (const id of ['..', `../${victim}`, `${victim}/inputs`, '.tmp']) {
      await expect(storage.getFile(id, 'inputs', 'secret')).rejects.toThrow(InvalidPathError);
      await expect(storage.createJob(id)).rejects.toThrow(InvalidPathError);
    }
    expect(await storage.listFiles(jobId, 'inputs')).toEqual([]);
    expect((await get(victim, 'inputs', 'secret')).data.toString()).toBe('secret data');
  });

  it('leaves nothing (or the previous file) when the source stream fails', async () => {
    const jobId = await newJob();
    await put(jobId, 'inputs', 'kept', 'previous');
    await expect(storage.putFile(jobId, 'inputs', 'kept', brokenStream(), 1024 * 1024)).rejects.toThrow('source broke');
    await expect(storage.putFile(jobId, 'inputs', 'new', brokenStream(), 1024 * 1024)).rejects.toThrow('source broke');
    expect((await get(jobId, 'inputs', 'kept')).data.toString()).toBe('previous');
    await expect(storage.getFile(jobId, 'inputs', 'new')).rejects.toThrow(FileNotFoundError);
    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['kept']);
  });
});
