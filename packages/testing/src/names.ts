import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A short random lowercase id, valid in bucket names, keys and queue names. */
export function uniqueId(prefix = 't'): string {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export function tempDir(label = 'shepherd'): string {
  return mkdtempSync(join(tmpdir(), `${label}-`));
}
