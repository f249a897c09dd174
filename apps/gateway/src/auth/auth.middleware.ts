import type { NextFunction, Request, Response } from 'express';
import type { Scope, ShepherdConfig } from '@shepherd/config';
import { hasScope, OPEN, setPrincipal } from './principal';
import { RateLimiter } from './rate-limiter';
import { presentedSecret, TokenBook } from './token-book';

/** Paths outside Nest's controllers, and the scope they need. */
export interface PathScope {
  prefix: string;
  scope: Scope;
  /** Browsers may send the token as a Basic auth password here (Bull Board). */
  basic?: boolean;
}

/**
 * Finds who makes each request before any route runs: 401 without a known
 * token (but on /health), 429 over the token's rate, and the scope check for
 * paths Nest does not route (Bull Board, the API docs). Nest routes check
 * their own scopes (ScopeGuard). Without `auth` in the config everyone is
 * let through, as in the original.
 */
export function authMiddleware(config: ShepherdConfig, paths: PathScope[]) {
  const auth = config.auth;
  const book = new TokenBook(auth?.tokens ?? []);
  const limiter = new RateLimiter();
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!auth) {
      setPrincipal(req, OPEN);
      return next();
    }
    if (req.path === '/health') return next();
    const area = paths.find((p) => req.path === p.prefix || req.path.startsWith(`${p.prefix}/`));
    const secret = presentedSecret(req.headers.authorization, area?.basic === true);
    const token = secret === null ? null : book.find(secret);
    if (!token) {
      res.setHeader('WWW-Authenticate', area?.basic ? 'Basic realm="Shepherd admin", charset="UTF-8"' : 'Bearer realm="Shepherd"');
      res.status(401).json({
        message: secret === null ? 'Authentication required: send the header `Authorization: Bearer <token>`' : 'Unknown API token',
      });
      return;
    }
    if (token.rateLimit) {
      const wait = limiter.take(token.name, token.rateLimit);
      if (wait > 0) {
        res.setHeader('Retry-After', String(wait));
        res.status(429).json({ message: `Too many requests: the token \`${token.name}\` may make ${token.rateLimit} per second` });
        return;
      }
    }
    const principal = { name: token.name, scopes: token.scopes };
    setPrincipal(req, principal);
    if (area && !hasScope(principal, area.scope)) {
      res.status(403).json({ message: `The token \`${token.name}\` lacks the scope \`${area.scope}\` this page needs` });
      return;
    }
    next();
  };
}
