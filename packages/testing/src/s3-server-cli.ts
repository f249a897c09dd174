/**
 * An S3-protocol server (s3rver) standing in for MinIO where MinIO's image
 * can't be had: `node s3-server-cli.js [--port 9000] [--directory /data]
 * [--bucket NAME ...]`. Like MinIO it takes its credentials from
 * MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (s3rver's own S3RVER/S3RVER stay
 * valid) and listens on every address.
 */
import { parseArgs } from 'node:util';
/* eslint-disable @typescript-eslint/no-require-imports -- s3rver has no type declarations */
const S3rver = require('s3rver');
const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
/* eslint-enable @typescript-eslint/no-require-imports */

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9000' },
    directory: { type: 'string', default: '/data' },
    bucket: { type: 'string', multiple: true, default: [] },
  },
});
const user = process.env.MINIO_ROOT_USER;
const password = process.env.MINIO_ROOT_PASSWORD;
if (user && password) DUMMY_ACCOUNT.createKeyPair(user, password);

const server = new S3rver({
  port: Number(values.port),
  address: '0.0.0.0',
  directory: values.directory,
  configureBuckets: values.bucket.map((name: string) => ({ name })),
  // Clients reach it by a service name ("minio"), which s3rver would take
  // for a bucket name otherwise.
  vhostBuckets: false,
});
server.run().then(
  (address: { port: number }) => console.log(`s3rver listening on :${address.port}, buckets: ${values.bucket.join(', ') || 'none'}`),
  (error: Error) => {
    console.error(`s3rver failed to start: ${error.message}`);
    process.exit(1);
  },
);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void server.close().then(() => process.exit(0)));
