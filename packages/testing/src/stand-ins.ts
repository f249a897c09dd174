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
    s3: s3Image('local/s3rver:3', base),
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

function s3Image(tag: string, base: string): string {
  if (imageExists(tag)) return tag;
  const context = tempDir('s3-stand-in');
  deployPackage('@shepherd/testing', join(context, 'app'));
  writeFileSync(
    join(context, 'Dockerfile'),
    `FROM ${base}\nCOPY app /app\nWORKDIR /data\nENTRYPOINT ["node", "/app/dist/s3-server-cli.js"]\n`,
  );
  execFileSync('docker', ['build', '-q', '-t', tag, context], { stdio: 'ignore' });
  return tag;
}
