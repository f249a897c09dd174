import { FilesystemStorage } from './filesystem-storage';
import type { JobStorage } from './job-storage';
import type { StorageOptions } from './options';
import { S3Storage } from './s3-storage';

export function createStorage(options: StorageOptions): JobStorage {
  switch (options.backend) {
    case 'filesystem':
      return new FilesystemStorage(options.root);
    case 's3':
      return new S3Storage(options);
  }
}
