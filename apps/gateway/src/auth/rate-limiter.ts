/**
 * Requests per second per token: a token bucket per name, in this process
 * (several gateways each allow the rate; a shared limit would cost a Redis
 * round trip on every request). Holds one entry per configured token.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** 0 when allowed; else seconds until the next request would be. */
  take(name: string, perSecond: number): number {
    const now = performance.now();
    const bucket = this.buckets.get(name) ?? { tokens: perSecond, at: now };
    bucket.tokens = Math.min(perSecond, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    this.buckets.set(name, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
  }
}
