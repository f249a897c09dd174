export * from './protocol';
export * from './runner-client';
export * from './base-runner';
