export * from './sheep-worker';
export * from './sheep/bare';
export * from './sheep/runner-host';
export * from './errors';
export * from './sheep/docker';
