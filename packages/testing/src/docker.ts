import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { freePort } from './redis';
import { tempDir } from './names';
import { waitFor } from './wait';

// No image can be pulled here: test images are built from the host's own
// node binary, `docker import`-ed as a base, and pushed to a local registry.

const REPO = resolve(__dirname, '../../..');
export const NODE_BASE_IMAGE = 'local/node-runtime:20';

function docker(args: string[], input?: string): string {
  return execFileSync('docker', args, { input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 }).toString();
}

export function imageExists(tag: string): boolean {
  try {
    docker(['image', 'inspect', tag]);
    return true;
  } catch {
    return false;
  }
}

/** A minimal image holding the host's node and the libraries it links. */
export function ensureNodeBaseImage(): string {
  if (imageExists(NODE_BASE_IMAGE)) return NODE_BASE_IMAGE;
  const root = tempDir('node-rootfs');
  const node = process.execPath;
  const libraries = execFileSync('ldd', [node])
    .toString()
    .split('\n')
    .flatMap((line) => /(\/\S+)/.exec(line)?.slice(1, 2) ?? []);
  for (const file of [node, ...libraries]) {
    const target = join(root, file === node ? '/usr/bin/node' : file);
    mkdirSync(dirname(target), { recursive: true });
    cpSync(file, target, { dereference: true });
  }
  mkdirSync(join(root, 'tmp'), { recursive: true });
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 512 * 1024 * 1024 });
  execFileSync('docker', ['import', '--change', 'ENV PATH=/usr/bin:/bin', '-', NODE_BASE_IMAGE], { input: tar });
  return NODE_BASE_IMAGE;
}

/**
 * The TypeScript echo runner as an image (`pnpm deploy` of the example with
 * its runtime dependencies), answering as `model`. `crash` makes an image
 * whose runner dies on start.
 */
export function buildEchoRunnerImage(tag: string, model: { name: string; version: string }, options: { crash?: boolean } = {}): void {
  ensureNodeBaseImage();
  const context = tempDir('echo-image');
  execFileSync('pnpm', ['--filter', '@shepherd/example-echo-runner', 'deploy', '--prod', '--legacy', join(context, 'app')], {
    cwd: REPO,
    stdio: 'ignore',
  });
  writeFileSync(join(context, 'config.yaml'), `runner: /app/dist/echo-runner.js\nmodel: {name: ${model.name}, version: ${model.version}}\n`);
  const command = options.crash
    ? '["node", "-e", "console.error(\'model weights missing\'); process.exit(3)"]'
    : '["node", "/app/node_modules/@shepherd/runner/dist/cli.js", "-p", "9999", "/config.yaml"]';
  writeFileSync(
    join(context, 'Dockerfile'),
    `FROM ${NODE_BASE_IMAGE}\nCOPY app /app\nCOPY config.yaml /config.yaml\nCMD ${command}\n`,
  );
  docker(['build', '-q', '-t', tag, context]);
}

export interface RegistryHandle {
  /** host:port, as image names use it. */
  address: string;
  url: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry on a free loopback port, optionally with basic auth. */
export async function startRegistry(auth?: { username: string; password: string }): Promise<RegistryHandle> {
  const dir = tempDir('registry');
  const port = await freePort();
  let authSection = '';
  if (auth) {
    const line = execFileSync('htpasswd', ['-Bbn', auth.username, auth.password]).toString().trim();
    writeFileSync(join(dir, 'htpasswd'), `${line}\n`);
    authSection = `auth:\n  htpasswd:\n    realm: shepherd-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: 127.0.0.1:${port}\n${authSection}`,
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(() => fetch(`${url}/v2/`).then((r) => r.status === 200 || r.status === 401, () => false), 15_000, 'the registry');
  return {
    address: `127.0.0.1:${port}`,
    url,
    async stop() {
      if (child.exitCode !== null) return;
      await new Promise((r) => {
        child.once('exit', r);
        child.kill('SIGTERM');
      });
    },
  };
}

/** Tags a local image into the registry and pushes it. */
export function pushImage(local: string, remote: string, auth?: { username: string; password: string }): void {
  if (auth) docker(['login', remote.split('/')[0] as string, '-u', auth.username, '--password-stdin'], auth.password);
  docker(['tag', local, remote]);
  docker(['push', '-q', remote]);
  docker(['rmi', remote]); // so a sheep must pull it
}

export function removeImage(tag: string): void {
  try {
    docker(['rmi', '-f', tag]);
  } catch {
    // not there
  }
}

export function dockerAnswers(): boolean {
  try {
    docker(['version', '--format', '{{.Server.Version}}']);
    return true;
  } catch {
    return false;
  }
}
