export * from './sheep-worker';
export * from './create-sheep';
export * from './sheep/bare';
export * from './sheep/runner-host';
export * from './errors';
export * from './sheep/docker';
