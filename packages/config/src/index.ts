export * from './config.schema';
export * from './sheep.schema';
export * from './errors';
export * from './load-config';
export * from './auth.schema';
