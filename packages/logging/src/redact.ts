/** What a redacted value is replaced with, in log lines and in URLs. */
export const REDACTED = '[REDACTED]';

/**
 * Keys whose values are credentials wherever they appear: the storage keys
 * and registry password of the config, tokens of any kind.
 */
const SECRET_KEYS = [
  'password',
  'passwd',
  'secret',
  'secretKey',
  'secret_key',
  'secretAccessKey',
  'secret_access_key',
  'accessKey',
  'access_key',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'sessionToken',
  'session_token',
  'apiKey',
  'api_key',
  'authorization',
];

/** Request and response headers that carry credentials (Node lower-cases header names). */
const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'x-api-key', 'cookie'];

function path(prefix: string, key: string): string {
  const step = /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `["${key}"]`;
  return prefix ? `${prefix}${step}` : step.slice(1);
}

/**
 * The paths pino blanks in every line of every service. A secret key is
 * caught at the top of the logged object and two levels down (`{ storage:
 * { secretKey } }`, `{ config: { storage: { secretKey } } }`); deeper ones
 * are not, so log the part of a config you need rather than all of it.
 */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS.flatMap((key) => [path('', key), path('*', key), path('*.*', key)]),
  ...SECRET_HEADERS.map((header) => path('req.headers', header)),
  path('res.headers', 'set-cookie'),
];

/** Query parameters whose values are credentials (compared case-insensitively). */
const SECRET_PARAMS = new Set(
  ['token', 'access_token', 'api_key', 'apikey', 'key', 'signature', 'x-amz-signature', 'x-amz-credential', 'x-amz-security-token'].map(
    (name) => name.toLowerCase(),
  ),
);

function isSecretParam(rawName: string): boolean {
  let name = rawName;
  try {
    name = decodeURIComponent(rawName.replace(/\+/g, ' '));
  } catch {
    // A malformed escape: compare the name as written.
  }
  return SECRET_PARAMS.has(name.toLowerCase());
}

/**
 * `url` with the values of token-like query parameters replaced by
 * `[REDACTED]`; everything else (path, other parameters, fragment) is kept
 * as written. Works on absolute URLs and on request paths (`/x?token=...`).
 */
export function redactUrl(url: string): string {
  const query = url.indexOf('?');
  if (query < 0) return url;
  const hash = url.indexOf('#', query);
  const end = hash < 0 ? url.length : hash;
  const params = url
    .slice(query + 1, end)
    .split('&')
    .map((param) => {
      const equals = param.indexOf('=');
      const name = equals < 0 ? param : param.slice(0, equals);
      return equals >= 0 && isSecretParam(name) ? `${name}=${REDACTED}` : param;
    });
  return `${url.slice(0, query + 1)}${params.join('&')}${url.slice(end)}`;
}

/** A parsed query object (Express's `req.query`) with token-like parameters redacted. */
export function redactQuery(query: unknown): unknown {
  if (!query || typeof query !== 'object' || Array.isArray(query)) return query;
  const entries = Object.entries(query as Record<string, unknown>);
  if (!entries.some(([name]) => isSecretParam(name))) return query;
  return Object.fromEntries(entries.map(([name, value]) => [name, isSecretParam(name) ? REDACTED : value]));
}

/** The fields of pino's standard request serializer that can carry a query string. */
export interface SerializedRequest {
  url?: unknown;
  query?: unknown;
}

/**
 * A request serializer for pino-http: the URL and the parsed query lose
 * their token-like values. It changes the object it is given, which
 * pino-http's wrapped serializer builds fresh for each line. Header
 * credentials are left to REDACT_PATHS.
 */
export function redactRequest<T extends SerializedRequest>(req: T): T {
  if (!req || typeof req !== 'object') return req;
  if (typeof req.url === 'string') req.url = redactUrl(req.url);
  if (req.query !== undefined) req.query = redactQuery(req.query);
  return req;
}
