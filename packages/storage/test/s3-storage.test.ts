import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { Client } from 'minio';
import type { JobStatus } from '@shepherd/contracts';
import { freePort, startS3Server, uniqueId, type S3ServerHandle } from '@shepherd/testing';
import { JobExistsError, JobNotFoundError, S3Storage, StorageUnavailableError, type S3StorageOptions } from '../src';
import { startRequestLog, type RequestLog } from './request-log';
import { bodyOf, readAll } from './streams';

// What only the S3 backend promises: its two object layouts, and failing
// fast with StorageUnavailableError when the server is gone.

const status: JobStatus = { status: 'accepted', model: { name: 'm', version: '1' } };

let s3: S3ServerHandle;
let raw: Client;

beforeAll(async () => {
  s3 = await startS3Server();
  raw = new Client({ endPoint: '127.0.0.1', port: s3.port, useSSL: false, accessKey: 'S3RVER', secretKey: 'S3RVER' });
});

afterAll(async () => {
  await s3?.stop();
});

function options(layout: S3StorageOptions['layout'], extra: Partial<S3StorageOptions> = {}): S3StorageOptions {
  return { backend: 's3', url: s3.url, accessKey: s3.accessKey, secretKey: s3.secretKey, layout, ...extra };
}

async function keys(bucket: string, prefix = ''): Promise<string[]> {
  const names: string[] = [];
  for await (const item of raw.listObjects(bucket, prefix, true)) if (item.name) names.push(item.name);
  return names.sort();
}

async function put(storage: S3Storage, jobId: string, path: string, data: string): Promise<void> {
  const { body, size } = bodyOf(data);
  await storage.putFile(jobId, 'inputs', path, body, size);
}

describe('S3Storage, bucket per job', () => {
  it('keeps inputs/, outputs/ and job_status.json in a bucket named by the job', async () => {
    const storage = new S3Storage(options('bucket-per-job'));
    expect(storage.jobIdRule).toBe('bucket');
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    expect(await raw.bucketExists(jobId)).toBe(true);
    await put(storage, jobId, 'a/b.txt', 'x');
    await storage.writeStatus(jobId, status);
    expect(await keys(jobId)).toEqual(['inputs/a/b.txt', 'job_status.json']);
    const stat = await raw.statObject(jobId, 'job_status.json');
    expect(stat.metaData['content-type']).toBe('application/json');

    await storage.deleteJob(jobId);
    expect(await raw.bucketExists(jobId)).toBe(false);
    await storage.close();
  });

  it('deletes a job holding many files in one folder', async () => {
    const storage = new S3Storage(options('bucket-per-job'));
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    for (let i = 0; i < 30; i++) await put(storage, jobId, `many/${i}`, String(i));
    await storage.deleteJob(jobId);
    expect(await storage.jobExists(jobId)).toBe(false);
    await storage.close();
  });

  it('lets a slow reader of a download take longer than the request timeout', async () => {
    const storage = new S3Storage(options('bucket-per-job', { requestTimeoutMs: 300 }));
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const data = randomBytes(4 * 1024 * 1024);
    await storage.putFile(jobId, 'outputs', 'big', Readable.from([data]), data.length);
    const file = await storage.getFile(jobId, 'outputs', 'big');
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect((await readAll(file.stream)).equals(data)).toBe(true);
    await storage.deleteJob(jobId);
    await storage.close();
  });

  it('names the object of a corrupt status record', async () => {
    const storage = new S3Storage(options('bucket-per-job'));
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    await raw.putObject(jobId, 'job_status.json', Buffer.from('not json'));
    await expect(storage.readStatus(jobId)).rejects.toThrow(`${s3.url}/${jobId}/job_status.json`);
    await storage.deleteJob(jobId);
    await storage.close();
  });
});

describe('S3Storage, single bucket', () => {
  let storage: S3Storage;
  let bucket: string;

  beforeAll(() => {
    bucket = uniqueId('bucket');
    storage = new S3Storage(options('single-bucket', { bucket }));
  });

  afterAll(async () => {
    await storage.close();
  });

  it('creates its bucket on the first job and keeps each job under <job>/', async () => {
    expect(storage.jobIdRule).toBe('key');
    expect(await raw.bucketExists(bucket)).toBe(false);
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    await put(storage, jobId, 'input', 'x');
    await storage.writeStatus(jobId, status);
    // A small first file shows the job exists by itself: no marker object.
    expect(await keys(bucket, `${jobId}/`)).toEqual([`${jobId}/inputs/input`, `${jobId}/job_status.json`]);
  });

  it('marks a job before a large first file, so it is not unseen while that uploads', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    const data = randomBytes(64 * 1024 + 1);
    await storage.putFile(jobId, 'inputs', 'big', Readable.from([data]), data.length);
    expect(await keys(bucket, `${jobId}/`)).toEqual([`${jobId}/.shepherd-job`, `${jobId}/inputs/big`]);
  });

  it('knows a job it created before anything is in it, and another process knows it from its first file', async () => {
    const other = new S3Storage(options('single-bucket', { bucket }));
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    expect(await storage.jobExists(jobId)).toBe(true);
    expect(await storage.listFiles(jobId, 'inputs')).toEqual([]);
    await expect(storage.createJob(jobId)).rejects.toThrow(JobExistsError);
    await put(storage, jobId, 'input', 'x');
    await expect(other.createJob(jobId)).rejects.toThrow(JobExistsError);
    expect(await other.listFiles(jobId, 'inputs')).toEqual(['input']);
    await other.close();
  });

  it('forgets a job it created when it deletes it, before or after its first file', async () => {
    for (const written of [false, true]) {
      const jobId = uniqueId('job');
      await storage.createJob(jobId);
      if (written) await put(storage, jobId, 'input', 'x');
      await storage.deleteJob(jobId);
      expect(await storage.jobExists(jobId)).toBe(false);
      await expect(put(storage, jobId, 'input', 'again')).rejects.toThrow(JobNotFoundError);
      await expect(storage.writeStatus(jobId, status)).rejects.toThrow(JobNotFoundError);
      expect(await keys(bucket, `${jobId}/`)).toEqual([]);
    }
  });

  it('counts a job whose inputs a client uploaded itself', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(uniqueId('job')); // makes sure the bucket exists
    await raw.putObject(bucket, `${jobId}/inputs/input`, Buffer.from('uploaded'));
    expect(await storage.jobExists(jobId)).toBe(true);
    await expect(storage.createJob(jobId)).rejects.toThrow(JobExistsError);
    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['input']);
    expect((await readAll((await storage.getFile(jobId, 'inputs', 'input')).stream)).toString()).toBe('uploaded');
  });

  it('does not hand on keys that are unsafe as paths', async () => {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    await raw.putObject(bucket, `${jobId}/inputs/a\\b`, Buffer.from('x'));
    await put(storage, jobId, 'fine', 'y');
    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['fine']);
  });

  it('deletes one job and leaves its neighbours alone', async () => {
    const [gone, kept] = [uniqueId('job'), uniqueId('job')];
    for (const jobId of [gone, kept]) {
      await storage.createJob(jobId);
      for (let i = 0; i < 10; i++) await put(storage, jobId, `f${i}`, 'x');
    }
    await storage.deleteJob(gone);
    expect(await keys(bucket, `${gone}/`)).toEqual([]);
    expect(await storage.listFiles(kept, 'inputs')).toHaveLength(10);
  });
});

describe('S3Storage, server unavailable', () => {
  async function expectUnavailable(work: Promise<unknown>, url: string): Promise<void> {
    const started = Date.now();
    const error = await work.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect((error as Error).message).toContain(url);
    expect(Date.now() - started).toBeLessThan(3000);
  }

  it.each(['bucket-per-job', 'single-bucket'] as const)('fails fast on a closed port (%s)', async (layout) => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const storage = new S3Storage(options(layout, { url, bucket: 'shepherd' }));
    await expectUnavailable(storage.ping(), url);
    await expectUnavailable(storage.createJob(uniqueId('job')), url);
    await expectUnavailable(storage.jobExists(uniqueId('job')), url);
    await storage.close();
  });

  it('fails when a server it used goes away', async () => {
    const other = await startS3Server();
    const storage = new S3Storage(options('bucket-per-job', { url: other.url }));
    await storage.ping();
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    await other.stop();
    await expectUnavailable(storage.ping(), other.url);
    await expectUnavailable(put(storage, jobId, 'input', 'x'), other.url);
    await expectUnavailable(storage.readStatus(jobId), other.url);
    await storage.close();
  });

  it('gives up on a server that accepts connections but never answers', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const storage = new S3Storage(options('bucket-per-job', { url, requestTimeoutMs: 300 }));
    try {
      await expectUnavailable(storage.ping(), url);
      await expect(storage.ping()).rejects.toThrow(/ETIMEDOUT|300 ms/);
    } finally {
      await storage.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('reports unknown credentials as unavailable', async () => {
    const storage = new S3Storage(options('bucket-per-job', { accessKey: 'WRONG' }));
    await expectUnavailable(storage.ping(), s3.url);
    await expect(storage.ping()).rejects.toThrow('InvalidAccessKeyId');
    await storage.close();
  });

  it('rejects a bad configuration at once', () => {
    expect(() => new S3Storage(options('bucket-per-job', { url: 'ftp://host' }))).toThrow('http');
    expect(() => new S3Storage(options('bucket-per-job', { url: 'not a url' }))).toThrow('Invalid S3 url');
    expect(() => new S3Storage(options('single-bucket'))).toThrow('bucket');
  });
});

describe('S3Storage, requests per job', () => {
  let log: RequestLog;

  beforeAll(async () => {
    log = await startRequestLog(s3.url);
  });

  afterAll(async () => {
    await log.stop();
  });

  /** A gateway and a worker (two processes) running one job with one small input and output, as the benchmark does. */
  async function oneJob(layout: S3StorageOptions['layout']): Promise<{ gateway: string[]; worker: string[] }> {
    const bucket = uniqueId('bucket');
    const gateway = new S3Storage(options(layout, { url: log.url, bucket }));
    const worker = new S3Storage(options(layout, { url: log.url, bucket }));
    await gateway.createJob(uniqueId('warm')); // the single bucket is made once per process
    const jobId = uniqueId('job');
    log.take();
    await gateway.createJob(jobId);
    await put(gateway, jobId, 'input', '{}');
    await gateway.writeStatus(jobId, status);
    const sent = log.take();
    for (const path of await worker.listFiles(jobId, 'inputs')) await readAll((await worker.getFile(jobId, 'inputs', path)).stream);
    await worker.putFile(jobId, 'outputs', 'output', ...args(bodyOf('{"x":1}')));
    await worker.writeStatus(jobId, { ...status, status: 'done' } as JobStatus);
    const received = log.take();
    await gateway.close();
    await worker.close();
    const named = (line: string) => line.replace(jobId, '<job>');
    return { gateway: sent.map(named), worker: received.map(named) };
  }

  function args(file: { body: Readable; size: number }): [Readable, number] {
    return [file.body, file.size];
  }

  it('bucket per job: the bucket, the input and status, then a listing, the input, the output and status', async () => {
    expect(await oneJob('bucket-per-job')).toEqual({
      gateway: ['PUT /', 'PUT /inputs/input', 'PUT /job_status.json'],
      worker: ['GET /?list', 'GET /inputs/input', 'PUT /outputs/output', 'PUT /job_status.json'],
    });
  });

  it('single bucket: one existence check at create, no marker, and no check before the worker writes', async () => {
    expect(await oneJob('single-bucket')).toEqual({
      gateway: ['GET /?max-keys=1', 'PUT /<job>/inputs/input', 'PUT /<job>/job_status.json'],
      worker: ['GET /?list', 'GET /<job>/inputs/input', 'PUT /<job>/outputs/output', 'PUT /<job>/job_status.json'],
    });
  });

  it('single bucket: a worker that reads a file it was told of writes without a check too', async () => {
    const bucket = uniqueId('bucket');
    const gateway = new S3Storage(options('single-bucket', { url: log.url, bucket }));
    const worker = new S3Storage(options('single-bucket', { url: log.url, bucket }));
    const jobId = uniqueId('job');
    await gateway.createJob(jobId);
    await put(gateway, jobId, 'input', '{}');
    log.take();
    await readAll((await worker.getFile(jobId, 'inputs', 'input')).stream);
    await worker.putFile(jobId, 'outputs', 'output', ...args(bodyOf('{}')));
    expect(log.take().map((line) => line.replace(jobId, '<job>'))).toEqual(['GET /<job>/inputs/input', 'PUT /<job>/outputs/output']);
    await gateway.close();
    await worker.close();
  });
});
