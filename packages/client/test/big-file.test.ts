// A big input streamed in from disk and back out to a directory, with the
// test process' memory (which holds the gateway too) bounded. 64 MB by
// default so CI stays quick; CLIENT_BIG=1 moves 1 GB, CLIENT_BIG_MB any size.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { tempDir, uniqueId } from '@shepherd/testing';
import { createNodeClient, fileInput, saveInput } from '../src/node';
import { startStack, type Stack } from './stack';

const MB = 1024 * 1024;
const SIZE_MB = Number(process.env.CLIENT_BIG_MB ?? (process.env.CLIENT_BIG === '1' ? 1024 : 64));
/**
 * Growth allowed over the RSS at the start of the transfer. The growth is
 * the bound that means something: Jest may run this file in a process that
 * already ran others (another gateway's leftovers: 320 MB at the start seen
 * here, 215-240 MB alone). CLIENT_BIG_RSS_MB adds an absolute bound.
 */
const RSS_GROWTH_MB = 100;
const RSS_LIMIT_MB = process.env.CLIENT_BIG_RSS_MB ? Number(process.env.CLIENT_BIG_RSS_MB) : Infinity;

/** Writes `bytes` of varying content chunk by chunk (never all in memory); answers its SHA-256. */
async function makeFile(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const block = Buffer.alloc(MB);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let written = 0, n = 0; written < bytes; n++) {
    block.writeUInt32LE(n, 0); // every megabyte differs
    const chunk = block.subarray(0, Math.min(MB, bytes - written));
    hash.update(chunk);
    written += chunk.length;
    if (!out.write(Buffer.from(chunk))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe(`a ${SIZE_MB} MB input through the client`, () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ worker: false }); // filesystem storage: s3rver has no multipart
  }, 60_000);
  afterAll(() => stack?.close());

  it('streams in from disk and back out to a directory with bounded memory', async () => {
    const dir = tempDir('client-big');
    const source = join(dir, 'big.bin');
    const expected = await makeFile(source, SIZE_MB * MB);
    const client = createNodeClient({ url: stack.url });
    const jobId = uniqueId('big');

    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const started = Date.now();
    try {
      expect(await client.uploadInput(jobId, await fileInput(source))).toBe('inputs/big.bin');
      const uploadedMs = Date.now() - started;
      await saveInput(client, jobId, join(dir, 'back'), { files: ['big.bin'] });
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(
        `${SIZE_MB} MB: up ${(uploadedMs / 1000).toFixed(1)} s, up+down ${seconds.toFixed(1)} s; ` +
          `RSS before ${(before / MB).toFixed(0)} MB, peak ${(peak / MB).toFixed(0)} MB\n`,
      );
    } finally {
      clearInterval(sampler);
    }
    const copy = join(dir, 'back/big.bin');
    const copied = { size: statSync(copy).size, hash: await hashFile(copy) };
    rmSync(dir, { recursive: true, force: true });
    expect(copied).toEqual({ size: SIZE_MB * MB, hash: expected });
    expect((peak - before) / MB).toBeLessThan(RSS_GROWTH_MB); // flat: not a copy of the file
    expect(peak / MB).toBeLessThan(RSS_LIMIT_MB);
  }, 15 * 60_000);
});
