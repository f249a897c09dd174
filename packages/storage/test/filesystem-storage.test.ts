import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import type { JobStatus } from '@shepherd/contracts';
import { tempDir, uniqueId } from '@shepherd/testing';
import { FileConflictError, FileNotFoundError, FilesystemStorage, JobNotFoundError, StorageUnavailableError } from '../src';
import { bodyOf, brokenStream } from './streams';

// What only the filesystem backend promises: its layout on disk, atomic
// writes through `.tmp`, and a clear error when the disk is unusable.

const status: JobStatus = { status: 'accepted', model: { name: 'm', version: '1' } };

describe('FilesystemStorage', () => {
  let root: string;
  let storage: FilesystemStorage;

  beforeAll(() => {
    root = join(tempDir('storage-fs'), 'nested', 'root');
    storage = new FilesystemStorage(root);
  });

  afterAll(() => {
    rmSync(join(root, '..', '..'), { recursive: true, force: true });
  });

  async function newJob(): Promise<string> {
    const jobId = uniqueId('job');
    await storage.createJob(jobId);
    return jobId;
  }

  function tmpEntries(): string[] {
    return readdirSync(join(root, '.tmp'));
  }

  it('uses job ids as keys', () => {
    expect(storage.jobIdRule).toBe('key');
  });

  it('keeps the layout <root>/<job>/{inputs,outputs}/... and job_status.json, creating the root', async () => {
    const jobId = await newJob();
    const { body, size } = bodyOf('data');
    await storage.putFile(jobId, 'inputs', 'a/b.txt', body, size);
    await storage.writeStatus(jobId, status);
    expect(readFileSync(join(root, jobId, 'inputs', 'a', 'b.txt'), 'utf8')).toBe('data');
    expect(JSON.parse(readFileSync(join(root, jobId, 'job_status.json'), 'utf8'))).toEqual(status);
    expect(tmpEntries()).toEqual([]);
  });

  it('leaves no file and no temp file when the source fails or is aborted', async () => {
    const jobId = await newJob();
    await expect(storage.putFile(jobId, 'outputs', 'x/broken', brokenStream())).rejects.toThrow('source broke');
    const aborted = new Readable({ read() {} });
    aborted.push(Buffer.alloc(1000));
    const pending = storage.putFile(jobId, 'outputs', 'aborted', aborted);
    setImmediate(() => aborted.destroy());
    await expect(pending).rejects.toThrow();
    expect(await storage.listFiles(jobId, 'outputs')).toEqual([]);
    expect(tmpEntries()).toEqual([]);
  });

  it('lists every regular file, hidden ones included, but never follows symlinks', async () => {
    const jobId = await newJob();
    const inputs = join(root, jobId, 'inputs');
    mkdirSync(join(inputs, '.dir'), { recursive: true });
    writeFileSync(join(inputs, '.dir', '.hidden'), 'h');
    writeFileSync(join(inputs, 'plain'), 'p');
    symlinkSync('/etc/hostname', join(inputs, 'link'));
    expect(await storage.listFiles(jobId, 'inputs')).toEqual(['.dir/.hidden', 'plain']);
    await expect(storage.getFile(jobId, 'inputs', 'link')).rejects.toThrow(FileNotFoundError);
  });

  it('refuses a file reached through a linked folder', async () => {
    const jobId = await newJob();
    const outside = tempDir('storage-fs-outside');
    mkdirSync(join(outside, 'sub'));
    writeFileSync(join(outside, 'sub', 'secret'), 'outside');
    mkdirSync(join(root, jobId, 'inputs'));
    symlinkSync(join(outside, 'sub'), join(root, jobId, 'inputs', 'sub'));
    symlinkSync(outside, join(root, jobId, 'outputs'));
    try {
      await expect(storage.getFile(jobId, 'inputs', 'sub/secret')).rejects.toThrow(FileNotFoundError);
      await expect(storage.getFile(jobId, 'outputs', 'sub/secret')).rejects.toThrow(FileNotFoundError);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('does not bring back a job removed behind its back: writes fail with JobNotFoundError', async () => {
    const jobId = await newJob();
    const { body, size } = bodyOf('x');
    await storage.putFile(jobId, 'inputs', 'input', body, size);
    rmSync(join(root, jobId), { recursive: true }); // another process deleted it
    await expect(storage.putFile(jobId, 'outputs', 'deep/out', bodyOf('y').body, 1)).rejects.toThrow(JobNotFoundError);
    await expect(storage.putFile(jobId, 'inputs', 'input', bodyOf('y').body, 1)).rejects.toThrow(JobNotFoundError);
    await expect(storage.putFile(jobId, 'outputs', 'big', bodyOf(Buffer.alloc(100_000)).body)).rejects.toThrow(JobNotFoundError);
    await expect(storage.writeStatus(jobId, status)).rejects.toThrow(JobNotFoundError);
    expect(existsSync(join(root, jobId))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });

  it('makes the folders of a nested path once, and refuses paths that collide with them', async () => {
    const jobId = await newJob();
    for (const [path, text] of [['a/b/c', '1'], ['a/b/d', '2'], ['a/e', '3']] as const) {
      const { body, size } = bodyOf(text);
      await storage.putFile(jobId, 'outputs', path, body, size);
    }
    expect(await storage.listFiles(jobId, 'outputs')).toEqual(['a/b/c', 'a/b/d', 'a/e']);
    await expect(storage.putFile(jobId, 'outputs', 'a/b', bodyOf('x').body, 1)).rejects.toThrow(FileConflictError);
    await expect(storage.putFile(jobId, 'outputs', 'a/e/f', bodyOf('x').body, 1)).rejects.toThrow(FileConflictError);
    expect(readFileSync(join(root, jobId, 'outputs', 'a', 'e'), 'utf8')).toBe('3');
    expect(tmpEntries()).toEqual([]);
  });

  it('makes its root again when someone removed it', async () => {
    const base = tempDir('storage-fs-root');
    const own = new FilesystemStorage(join(base, 'root'));
    const jobId = uniqueId('job');
    await own.createJob(jobId);
    rmSync(base, { recursive: true });
    await own.createJob(jobId);
    const { body, size } = bodyOf('again');
    await own.putFile(jobId, 'inputs', 'input', body, size);
    expect(await own.listFiles(jobId, 'inputs')).toEqual(['input']);
    rmSync(base, { recursive: true });
  });

  it('names the file of a corrupt status record', async () => {
    const jobId = await newJob();
    const file = join(root, jobId, 'job_status.json');
    writeFileSync(file, '{"status": "lost"');
    await expect(storage.readStatus(jobId)).rejects.toThrow(file);
    writeFileSync(file, JSON.stringify({ status: 'lost', model: { name: 'm', version: '1' } }));
    await expect(storage.readStatus(jobId)).rejects.toThrow(/job_status\.json: status/);
  });

  it('deletes a job without leaving anything in .tmp', async () => {
    const jobId = await newJob();
    const { body, size } = bodyOf('x');
    await storage.putFile(jobId, 'inputs', 'deep/file', body, size);
    await storage.deleteJob(jobId);
    expect(readdirSync(root)).not.toContain(jobId);
    expect(tmpEntries()).toEqual([]);
  });

  it('keeps the last of concurrent writes to one path whole', async () => {
    const jobId = await newJob();
    const contents = Array.from({ length: 8 }, (_, i) => String(i).repeat(100_000));
    await Promise.all(contents.map((text) => storage.putFile(jobId, 'outputs', 'same', bodyOf(text).body)));
    const data = readFileSync(join(root, jobId, 'outputs', 'same'), 'utf8');
    expect(contents).toContain(data);
    expect(tmpEntries()).toEqual([]);
  });

  it('reports an unusable root as StorageUnavailableError naming it', async () => {
    const dir = tempDir('storage-fs-bad');
    writeFileSync(join(dir, 'file'), 'not a directory');
    const broken = new FilesystemStorage(join(dir, 'file', 'root'));
    try {
      await expect(broken.ping()).rejects.toThrow(StorageUnavailableError);
      await expect(broken.ping()).rejects.toThrow(join(dir, 'file', 'root'));
      await expect(broken.createJob('job1')).rejects.toThrow(StorageUnavailableError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
