// The browser-safe entry: fetch, streams and zod only (no `node:` imports).
// File-system helpers are in `@shepherd/client/node`.
export * from './client';
export * from './download';
export * from './errors';
export type { TransportOptions, RetryPolicy } from './http';
export type { EventsOptions } from './job-events';
export * from './sse';
export * from './types';
