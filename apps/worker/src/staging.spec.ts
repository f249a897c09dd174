import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FilesystemStorage, InvalidPathError, type JobFolder } from '@shepherd/storage';
import { tempDir, uniqueId } from '@shepherd/testing';
import { Staging } from './staging';

// Staging against a real filesystem storage: inputs in, outputs out, the job's directory gone after.

/** Counts the listings staging asks of storage (our own interface; everything else is the real storage). */
class CountingStorage extends FilesystemStorage {
  listings = 0;
  override async listFiles(jobId: string, folder: JobFolder): Promise<string[]> {
    this.listings += 1;
    return super.listFiles(jobId, folder);
  }
}

let dir: string;
let storage: CountingStorage;
let staging: Staging;

beforeEach(() => {
  dir = tempDir('staging');
  storage = new CountingStorage(join(dir, 'storage'));
  staging = new Staging(storage, join(dir, 'sheep'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function newJob(inputs: Record<string, string | Buffer>): Promise<string> {
  const jobId = uniqueId('job');
  await storage.createJob(jobId);
  for (const [path, data] of Object.entries(inputs)) {
    const buffer = Buffer.from(data);
    await storage.putFile(jobId, 'inputs', path, Readable.from([buffer]), buffer.length);
  }
  return jobId;
}

function sheepDir(): string[] {
  return existsSync(staging.root) ? readdirSync(staging.root) : [];
}

describe('Staging', () => {
  it('stages every input, small, large and nested, uploads the outputs, then removes the job directory', async () => {
    const big = Buffer.alloc(200_000, 7);
    const jobId = await newJob({ input: '{}', 'images/a/b.png': big, 'images/c.png': 'c' });
    await staging.stageInputs(jobId);
    const local = staging.jobDir(jobId);
    expect(readFileSync(join(local, 'inputs', 'input'), 'utf8')).toBe('{}');
    expect(readFileSync(join(local, 'inputs', 'images', 'a', 'b.png')).equals(big)).toBe(true);
    expect(readFileSync(join(local, 'inputs', 'images', 'c.png'), 'utf8')).toBe('c');
    expect(readdirSync(join(local, 'outputs'))).toEqual([]);

    mkdirSync(join(local, 'outputs', 'deep', 'er'), { recursive: true });
    writeFileSync(join(local, 'outputs', 'output'), '{"x":1}');
    writeFileSync(join(local, 'outputs', 'deep', 'er', 'big.bin'), big);
    expect(await staging.uploadOutputs(jobId)).toEqual(['deep/er/big.bin', 'output']);
    const stored = await storage.getFile(jobId, 'outputs', 'deep/er/big.bin');
    expect(stored.size).toBe(big.length);
    stored.stream.destroy();

    await staging.remove(jobId);
    expect(sheepDir()).toEqual([]);
  });

  it('stages the inputs it is told of without listing them', async () => {
    const jobId = await newJob({ input: 'payload' });
    await staging.stageInputs(jobId, ['input']);
    expect(storage.listings).toBe(0);
    expect(readFileSync(join(staging.jobDir(jobId), 'inputs', 'input'), 'utf8')).toBe('payload');
    await staging.stageInputs(await newJob({ input: 'listed' }));
    expect(storage.listings).toBe(1);
  });

  it('refuses an input path it is told of that climbs out, before making anything for it', async () => {
    const jobId = await newJob({ input: 'x' });
    await expect(staging.stageInputs(jobId, ['../escape'])).rejects.toThrow(InvalidPathError);
    expect(existsSync(join(staging.jobDir(jobId), 'escape'))).toBe(false);
  });

  it('removes whatever the runner left besides its outputs, links included', async () => {
    const jobId = await newJob({ input: 'x', 'sub/y': 'y' });
    await staging.stageInputs(jobId);
    const local = staging.jobDir(jobId);
    writeFileSync(join(local, 'scratch'), 'left by the runner');
    mkdirSync(join(local, 'inputs', 'sub', 'cache'));
    symlinkSync('/etc/hostname', join(local, 'outputs', 'link'));
    rmSync(join(local, 'inputs', 'input')); // and one it removed
    expect(await staging.uploadOutputs(jobId)).toEqual([]);
    await staging.remove(jobId);
    expect(sheepDir()).toEqual([]);
    expect(existsSync('/etc/hostname')).toBe(true);
  });

  it('removes the directory of a job whose staging failed half-way, and of one never staged here', async () => {
    const jobId = await newJob({ input: 'x' });
    await expect(staging.stageInputs(jobId, ['input', 'missing'])).rejects.toThrow('does not exist');
    await staging.remove(jobId);
    mkdirSync(join(staging.jobDir('stray'), 'outputs'), { recursive: true });
    await staging.remove('stray');
    expect(sheepDir()).toEqual([]);
  });

  it("makes the sheep's root again when it was removed", async () => {
    const jobId = await newJob({ input: 'x' });
    rmSync(staging.root, { recursive: true, force: true });
    await staging.stageInputs(jobId);
    expect(readFileSync(join(staging.jobDir(jobId), 'inputs', 'input'), 'utf8')).toBe('x');
  });
});
