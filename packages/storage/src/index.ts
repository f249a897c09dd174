export * from './errors';
export * from './job-storage';
export * from './options';
export { safeJobId, safeRelativePath } from './paths';
export { FilesystemStorage } from './filesystem-storage';
export { S3Storage } from './s3-storage';
export { createStorage } from './create-storage';
