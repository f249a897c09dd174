import { SetMetadata, type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import type { Scope, ShepherdConfig } from '@shepherd/config';
import { ApiError } from '../errors/api-errors';
import { CONFIG } from '../core/tokens';
import { hasScope, principalOf } from './principal';

const SCOPES_KEY = 'shepherd:scopes';
const PUBLIC_KEY = 'shepherd:public';

/** The route needs a token with one of these scopes. A route without it needs `admin`: a new route is closed until it says otherwise. */
export const RequireScope = (...scopes: Scope[]) => SetMetadata(SCOPES_KEY, scopes);

/** The route answers without a token (only /health). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** Checks the scopes of the token the auth middleware found. */
@Injectable()
export class ScopeGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    @Inject(CONFIG) private readonly config: ShepherdConfig,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (!this.config.auth) return true;
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const needed = this.reflector.getAllAndOverride<Scope[] | undefined>(SCOPES_KEY, targets) ?? ['admin'];
    const principal = principalOf(context.switchToHttp().getRequest<Request>());
    if (needed.some((scope) => hasScope(principal, scope))) return true;
    throw new ApiError(403, `The token \`${principal.name}\` lacks the scope ${needed.map((s) => `\`${s}\``).join(' or ')} this route needs`);
  }
}
