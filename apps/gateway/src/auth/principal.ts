import type { Request } from 'express';
import type { Scope } from '@shepherd/config';

/** Who makes a request: a named API token with its scopes, or anyone when the gateway is open. */
export interface Principal {
  /** The token's name; null on an open gateway (no `auth` configured). */
  name: string | null;
  scopes: readonly Scope[];
}

export const OPEN: Principal = { name: null, scopes: ['submit', 'read', 'admin', 'metrics'] };

export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

/** Admins and the open gateway see every job; a token sees the jobs it submitted. */
export function mayAccess(principal: Principal, owner: string | null | undefined): boolean {
  return principal.name === null || principal.scopes.includes('admin') || owner === principal.name;
}

const KEY = Symbol('principal');

export function principalOf(req: Request): Principal {
  return (req as unknown as Record<symbol, Principal | undefined>)[KEY] ?? OPEN;
}

export function setPrincipal(req: Request, principal: Principal): void {
  (req as unknown as Record<symbol, Principal>)[KEY] = principal;
}
