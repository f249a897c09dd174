export * from './redis';
export * from './keys';
export * from './status-store';
export * from './status-events';
export * from './job-queues';
export * from './sheep-registry';
export * from './work-signal';
export * from './metrics-store';
