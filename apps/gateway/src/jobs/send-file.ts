import type { Response } from 'express';
import { lookup } from 'mime-types';
import { pipeline } from 'node:stream/promises';
import type { StoredFile } from '@shepherd/storage';

/** Streams a stored file with a MIME type guessed from its name, like the original. */
export async function sendFile(res: Response, path: string, file: StoredFile): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', lookup(path) || 'application/octet-stream');
  res.setHeader('Content-Length', String(file.size));
  try {
    await pipeline(file.stream, res);
  } catch {
    // The client went away or storage broke off: the response is already
    // partly sent, so all that is left is to close it.
    res.destroy();
  }
}

/** Express 5 hands a `*name` wildcard over as its segments. */
export function wildcardPath(value: string | string[] | undefined, fallback: string): string {
  if (value === undefined) return fallback;
  return Array.isArray(value) ? value.join('/') : value;
}
