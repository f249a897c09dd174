import type { JobState } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

export interface IndexPage {
  jobIds: string[];
  /** Opaque; null on the last page. */
  cursor: string | null;
}

/**
 * Indexes kept beside the status records: every job by submit time (the
 * listing pages through it, newest first) and finished jobs by finish time
 * per final state (written by StatusStore; retention sweeps them). Pages are keyed by (time, id),
 * so jobs added while a client pages appear before its position, never
 * as duplicates or gaps behind it.
 */
export class JobIndex {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async added(jobId: string, atMs: number): Promise<void> {
    await viaRedis(() => this.redis.zadd(this.keys.jobIndex, 'NX', atMs, jobId));
  }

  /** Finished jobs in `state` that ended before `beforeMs`, oldest first. */
  async finishedBefore(state: JobState, beforeMs: number, limit: number): Promise<string[]> {
    return viaRedis(() => this.redis.zrangebyscore(this.keys.finishedIndex(state), '-inf', beforeMs, 'LIMIT', 0, limit));
  }

  /** Up to `limit` job ids, newest first, after `cursor`. */
  async page(limit: number, cursor: string | null): Promise<IndexPage> {
    const after = cursor ? decodeCursor(cursor) : null;
    const key = this.keys.jobIndex;
    const ids: string[] = [];
    let last: { score: number; id: string } | null = after;
    if (after) {
      // Ties at the cursor's time come back in reverse id order: those below its id are still to come.
      const ties = await viaRedis(() => this.redis.zrevrangebyscore(key, after.score, after.score));
      for (const id of ties) {
        if (id < after.id && ids.length < limit) {
          ids.push(id);
          last = { score: after.score, id };
        }
      }
    }
    if (ids.length < limit) {
      const max = after ? `(${after.score}` : '+inf';
      const rows = await viaRedis(() => this.redis.zrevrangebyscore(key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, limit - ids.length));
      for (let i = 0; i < rows.length; i += 2) {
        const id = rows[i] ?? '';
        ids.push(id);
        last = { score: Number(rows[i + 1]), id };
      }
    }
    return { jobIds: ids, cursor: ids.length === limit && last ? encodeCursor(last) : null };
  }
}

function encodeCursor(position: { score: number; id: string }): string {
  return Buffer.from(JSON.stringify([position.score, position.id])).toString('base64url');
}

/** Throws InvalidCursorError for anything this class did not make. */
function decodeCursor(cursor: string): { score: number; id: string } {
  try {
    const [score, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [unknown, unknown];
    if (typeof score === 'number' && Number.isFinite(score) && typeof id === 'string') return { score, id };
  } catch {
    // falls through
  }
  throw new InvalidCursorError(cursor);
}

export class InvalidCursorError extends Error {
  constructor(cursor: string) {
    super(`Invalid cursor ${JSON.stringify(cursor.slice(0, 64))}: pass the \`cursor\` of the previous page as it was`);
    this.name = 'InvalidCursorError';
  }
}
