import type { Readable } from 'node:stream';
import type { Client } from 'minio';
import { safeRelativePath } from './paths';
import { answeredByServer, codeOf } from './s3-errors';

// Requests over many keys, for S3Storage.

/** Whether any key starts with `prefix` (one LIST of at most one key); false in a missing bucket. */
export async function hasObjects(client: Client, bucket: string, prefix: string): Promise<boolean> {
  try {
    const page = await client.listObjectsQuery(bucket, prefix, '', { Delimiter: '', MaxKeys: 1 });
    return (page.objects?.length ?? 0) > 0;
  } catch (error) {
    if (codeOf(error) === 'NoSuchBucket') return false;
    throw error;
  }
}

/**
 * Every key under `prefix`: ListObjects V1, which every S3 server has: s3rver
 * 3.7 cannot page V2 listings on OpenSSL 3 (its continuation tokens use DES)
 * and answers 500.
 */
export async function listKeys(client: Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of client.listObjects(bucket, prefix, true)) {
    const name = (item as { name?: string }).name;
    if (name !== undefined) keys.push(name);
  }
  return keys;
}

export async function removeKeys(client: Client, bucket: string, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  let failures: unknown[];
  try {
    // minio answers the per-key failures of the batch, not an exception.
    failures = (await client.removeObjects(bucket, keys)).filter(Boolean);
  } catch (error) {
    if (!answeredByServer(error)) throw error;
    // Some S3-compatible servers lack or break multi-object delete (s3rver
    // 3.7 answers 500 when several keys share a folder): one DELETE per key.
    for (const key of keys) await client.removeObject(bucket, key);
    return;
  }
  if (failures.length > 0) {
    throw new Error(`Could not delete ${failures.length} object(s) in bucket ${bucket}: ${JSON.stringify(failures[0])}`);
  }
}

/** Keys written by other clients may hold `..` or `//`: never handed on as paths. */
export function isSafePath(path: string): boolean {
  try {
    safeRelativePath(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a small object (the status record) whole. */
export async function readText(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
