import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyWithLibraries, deployPackage, ensureNodeBaseImage, imageExists } from './docker';
import { tempDir } from './names';

// Images that stand in for the compose stack's Redis, MinIO and registry
// where those images can't be pulled: each is a Debian binary of this host
// (or s3rver) on the locally made node base.

export interface StandInImages {
  redis: string;
  s3: string;
  registry: string;
  /** For one-shot helpers (MinIO's bucket setup): a shell and node. */
  base: string;
}

export function buildStandInImages(): StandInImages {
  const base = ensureNodeBaseImage();
  return {
    redis: binaryImage('local/redis:debian', base, ['/usr/bin/redis-server'], { workdir: '/data', cmd: ['redis-server'] }),
    registry: binaryImage('local/registry:debian', base, ['/usr/bin/docker-registry'], {
      files: {
        'etc/docker/registry/config.yml':
          'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n',
      },
      cmd: ['docker-registry', 'serve', '/etc/docker/registry/config.yml'],
    }),
    // The tag names the guarded entry (below): an older unguarded image is not reused.
    s3: s3Image('local/s3rver:3-keyed', base),
    base,
  };
}

function binaryImage(
  tag: string,
  base: string,
  binaries: string[],
  options: { files?: Record<string, string>; workdir?: string; cmd: string[] },
): string {
  if (imageExists(tag)) return tag;
  const context = tempDir('stand-in');
  const root = join(context, 'rootfs');
  copyWithLibraries(root, binaries);
  for (const [path, text] of Object.entries(options.files ?? {})) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const lines = [`FROM ${base}`, 'COPY rootfs /'];
  if (options.workdir) lines.push(`WORKDIR ${options.workdir}`);
  lines.push(`CMD ${JSON.stringify(options.cmd)}`);
  writeFileSync(join(context, 'Dockerfile'), `${lines.join('\n')}\n`);
  execFileSync('docker', ['build', '-q', '-t', tag, context], { stdio: 'ignore' });
  return tag;
}

/**
 * s3rver lets unsigned requests through, keeps its own S3RVER/S3RVER key
 * and checks no V4 signature. Its stand-in image starts it behind a guard:
 * the built-in key is revoked, and every request must name the configured
 * access key (MINIO_ROOT_USER) in its signature, or is refused 403; with no
 * key configured, every request is. The signature itself is still not
 * checked: the access key, random like the secret, is what keeps others out.
 */
const S3_GUARD = `'use strict';
const S3rver = require('s3rver');
const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
const key = process.env.MINIO_ROOT_USER || '';
const named = (ctx) => {
  const header = ctx.get('authorization');
  // V4 header, V2 header, V4 presigned query, V2 presigned query.
  const credential = /Credential=([^/,\\s]+)/.exec(header)?.[1] || /^AWS ([^:]+):/.exec(header)?.[1] ||
    String(ctx.query['X-Amz-Credential'] || '').split('/')[0] || String(ctx.query.AWSAccessKeyId || '');
  return key !== '' && credential === key;
};
const run = S3rver.prototype.run;
S3rver.prototype.run = function (...args) {
  this.middleware.unshift(async (ctx, next) => {
    if (named(ctx)) return next();
    ctx.status = 403;
    ctx.type = 'application/xml';
    ctx.body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>';
  });
  return run.apply(this, args);
};
require('./dist/s3-server-cli.js');
`;

function s3Image(tag: string, base: string): string {
  if (imageExists(tag)) return tag;
  const context = tempDir('s3-stand-in');
  deployPackage('@shepherd/testing', join(context, 'app'));
  writeFileSync(join(context, 'app', 's3-guard.js'), S3_GUARD);
  writeFileSync(
    join(context, 'Dockerfile'),
    `FROM ${base}\nCOPY app /app\nWORKDIR /data\nENTRYPOINT ["node", "/app/s3-guard.js"]\n`,
  );
  execFileSync('docker', ['build', '-q', '-t', tag, context], { stdio: 'ignore' });
  return tag;
}
