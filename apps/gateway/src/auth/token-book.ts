import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiToken } from '@shepherd/config';

/**
 * Finds the configured token a request presents. The presented secret is
 * hashed and compared with every configured hash in constant time, so
 * neither the answer time nor an early exit tells how close a guess was.
 */
export class TokenBook {
  private readonly hashes: Array<{ token: ApiToken; digest: Buffer }>;

  constructor(tokens: readonly ApiToken[]) {
    this.hashes = tokens.map((token) => ({ token, digest: Buffer.from(token.sha256, 'hex') }));
  }

  find(secret: string): ApiToken | null {
    const digest = createHash('sha256').update(secret).digest();
    let found: ApiToken | null = null;
    for (const entry of this.hashes) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.token;
    }
    return found;
  }
}

/** The secret of `Authorization: Bearer <token>`, or the password of Basic auth (browsers, for Bull Board). */
export function presentedSecret(header: string | undefined, allowBasic: boolean): string | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (space < 0 || !value) return null;
  if (scheme === 'bearer') return value;
  if (scheme === 'basic' && allowBasic) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : null;
  }
  return null;
}
