import { createHash } from 'node:crypto';
import type { RedisClient } from './redis';

/**
 * A Lua script sent by its SHA1 (EVALSHA), its source only when the server
 * does not know it yet (NOSCRIPT: first use, a restart, another cluster
 * node). EVAL would send and hash the whole source on every call.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: RedisClient, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
