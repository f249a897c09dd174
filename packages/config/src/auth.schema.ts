import { createHash } from 'node:crypto';
import { z } from 'zod';
import { intField, nonEmpty } from './fields';

/**
 * What a token may do. `admin` may do everything, on every job; the others
 * act on the token's own jobs only.
 */
export const SCOPES = ['submit', 'read', 'admin', 'metrics'] as const;
export type Scope = (typeof SCOPES)[number];

const TokenSchema = z
  .strictObject({
    /** Shown in logs and remembered on each job it submits; never the secret. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, ".", "_", "-"'),
    /** The token's SHA-256 in hex (preferred: the config then holds no secret). */
    token_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex digits').optional(),
    /** The token itself, usually `${SOME_ENV_VAR}`; at least 16 characters. */
    token: z.string().min(16, 'expected at least 16 characters').optional(),
    scopes: z.array(z.enum(SCOPES)).min(1),
    /** Requests per second this token may make (over the default). */
    rate_limit: intField(1, 1_000_000).optional(),
    /** Jobs of this token that may wait (accepted or queued) at once (over the default). */
    max_waiting_jobs: intField(1, 10_000_000).optional(),
  })
  .superRefine((t, ctx) => {
    if (!t.token_sha256 === !t.token) ctx.addIssue({ code: 'custom', message: 'expected exactly one of token_sha256 and token' });
  })
  .transform((t) => ({
    name: t.name,
    sha256: t.token_sha256?.toLowerCase() ?? createHash('sha256').update(t.token ?? '').digest('hex'),
    scopes: t.scopes,
    rateLimit: t.rate_limit,
    maxWaitingJobs: t.max_waiting_jobs,
  }));

/** API tokens. Without this section the gateway is open, as the original. */
export const AuthSchema = z
  .strictObject({
    tokens: z.array(TokenSchema).min(1),
    /** Default requests per second per token; none when unset. */
    rate_limit: intField(1, 1_000_000).optional(),
    /** Default jobs per token waiting at once; none when unset. */
    max_waiting_jobs: intField(1, 10_000_000).optional(),
  })
  .superRefine((auth, ctx) => {
    const seen = new Set<string>();
    auth.tokens.forEach((token, index) => {
      if (seen.has(token.name)) ctx.addIssue({ code: 'custom', path: ['tokens', index, 'name'], message: `expected a unique name (${token.name} twice)` });
      seen.add(token.name);
    });
  })
  .transform((auth) => ({
    tokens: auth.tokens.map((token) => ({
      ...token,
      rateLimit: token.rateLimit ?? auth.rate_limit,
      maxWaitingJobs: token.maxWaitingJobs ?? auth.max_waiting_jobs,
    })),
  }));

export type AuthConfig = z.output<typeof AuthSchema>;
export type ApiToken = AuthConfig['tokens'][number];

export const CorsOriginsSchema = z.union([z.literal('*'), z.array(nonEmpty())]);
