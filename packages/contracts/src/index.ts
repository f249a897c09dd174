export * from './model.schema';
export * from './job-id';
export * from './job-status.schema';
export * from './start-job.schema';
export * from './job-data.schema';
export * from './queues';
export * from './zod-message';
