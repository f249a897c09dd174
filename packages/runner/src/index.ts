export * from './protocol';
export * from './runner-client';
export * from './base-runner';
export * from './progress-coalescer';
