import { SheepStateSchema, type SheepState } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

export type { SheepState };

/**
 * Sheep states in Redis with a time to live: a worker that stops beating
 * (killed, frozen, cut off) disappears by itself and shows as not running.
 */
export class SheepRegistry {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async publish(sheepId: string, state: SheepState, ttlMs: number): Promise<void> {
    await viaRedis(() => this.redis.set(this.keys.sheep(sheepId), JSON.stringify(state), 'PX', ttlMs));
  }

  async remove(sheepId: string): Promise<void> {
    await viaRedis(() => this.redis.del(this.keys.sheep(sheepId)));
  }

  /** States of the given sheep; null for those not running. */
  async read(sheepIds: string[]): Promise<Map<string, SheepState | null>> {
    const result = new Map<string, SheepState | null>();
    if (sheepIds.length === 0) return result;
    // One GET per sheep: their keys lie in other slots on a cluster.
    const values = await viaRedis(() => Promise.all(sheepIds.map((id) => this.redis.get(this.keys.sheep(id)))));
    sheepIds.forEach((id, index) => {
      const value = values[index];
      result.set(id, value ? parseState(value) : null);
    });
    return result;
  }
}

/** A state that does not parse (another version's, or damaged) reads as not running. */
function parseState(value: string): SheepState | null {
  try {
    return SheepStateSchema.parse(JSON.parse(value));
  } catch {
    return null;
  }
}
