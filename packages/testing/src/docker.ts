import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { freePort } from './redis';
import { tempDir } from './names';
import { waitFor } from './wait';

// No image can be pulled here: test images are built from the host's own
// node binary, `docker import`-ed as a base, and pushed to a local registry.

/** The repository's root. */
export const REPO = resolve(__dirname, '../../..');
export const NODE_BASE_IMAGE = 'local/node-base:20-2';
const BUSYBOX = '/usr/bin/busybox';
// npm's own directory, wherever this host installed it.
const NPM_DIR = () => resolve(realpathSync(execFileSync('sh', ['-c', 'command -v npm']).toString().trim()), '../..');

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

/**
 * Copies each host file into `root` at the same path, with the shared
 * libraries it links (as `ldd` lists them), so it runs in an image made of
 * nothing else.
 */
export function copyWithLibraries(root: string, files: string[]): void {
  for (const file of files) {
    // ldd exits 1 for a static binary: it links nothing.
    const libraries = spawnSync('ldd', [file])
      .stdout.toString()
      .split('\n')
      .flatMap((line) => /(\/\S+)/.exec(line)?.slice(1, 2) ?? []);
    for (const path of [file, ...libraries]) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      cpSync(path, join(root, path), { dereference: true });
    }
  }
}

/** The rest of glibc that slim images have and other binaries (pnpm's) link. */
function glibcExtras(): string[] {
  const names = ['librt.so.1', 'libpthread.so.0', 'libdl.so.2', 'libresolv.so.2', 'libutil.so.1', 'libnss_files.so.2', 'libnss_dns.so.2'];
  const libc = /=> (\S+libc\.so\.6)/.exec(execFileSync('ldd', [process.execPath]).toString())?.[1];
  if (!libc) return [];
  return names.map((name) => join(dirname(libc), name)).filter((path) => existsSync(path));
}

/**
 * A small Debian-like image made from this host: its node and npm, a
 * static busybox as /bin/sh and the usual commands, and the libraries node
 * links. Enough to build and run Shepherd's images without pulling one.
 * The tag changes when the recipe does, so an older local image is never
 * mistaken for it.
 */
export function ensureNodeBaseImage(): string {
  if (imageExists(NODE_BASE_IMAGE)) return NODE_BASE_IMAGE;
  const root = tempDir('node-rootfs');
  for (const dir of ['tmp', 'etc', 'bin', 'usr/bin', 'usr/lib/node_modules', 'root']) mkdirSync(join(root, dir), { recursive: true });
  copyWithLibraries(root, [process.execPath, BUSYBOX, ...glibcExtras()]);
  if (process.execPath !== '/usr/bin/node') cpSync(process.execPath, join(root, 'usr/bin/node'));
  for (const applet of execFileSync(BUSYBOX, ['--list']).toString().split('\n').filter(Boolean)) {
    if (!existsSync(join(root, 'bin', applet))) symlinkSync(BUSYBOX, join(root, 'bin', applet));
  }
  cpSync(NPM_DIR(), join(root, 'usr/lib/node_modules/npm'), { recursive: true, dereference: true });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/bin/npm'));
  symlinkSync(BUSYBOX, join(root, 'usr/bin/env')); // for `#!/usr/bin/env node` scripts
  chmodSync(join(root, 'tmp'), 0o1777);
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 1024 * 1024 * 1024 });
  execFileSync('docker', ['import', '--change', 'ENV PATH=/usr/local/bin:/usr/bin:/bin', '-', NODE_BASE_IMAGE], { input: tar });
  rmSync(root, { recursive: true, force: true });
  return NODE_BASE_IMAGE;
}

/**
 * `pnpm deploy --prod` of a workspace package into `dest`. pnpm records the
 * deploy's options (dev: false) as the workspace's install state, and the
 * next `pnpm <script>` then "repairs" the workspace by pruning every dev
 * dependency (turbo, jest, tsc gone); the state files are put back after.
 */
export function deployPackage(name: string, dest: string): void {
  const modules = join(REPO, 'node_modules');
  const stateFiles = readdirSync(modules).filter((file) => file === '.modules.yaml' || file.startsWith('.pnpm-workspace-state'));
  const saved = stateFiles.map((file) => [join(modules, file), readFileSync(join(modules, file))] as const);
  try {
    execFileSync('pnpm', ['--filter', name, 'deploy', '--prod', '--legacy', dest], { cwd: REPO, stdio: 'ignore' });
  } finally {
    for (const [path, content] of saved) writeFileSync(path, content);
  }
}

/**
 * How the image's main process treats SIGTERM. `node` (default): the runner
 * is PID 1 and stops on SIGTERM. `shell-pid1`: a shell is PID 1 and runs the
 * runner as its child; as PID 1 it ignores SIGTERM (the kernel gives PID 1
 * no default actions) unless an init process runs it. `ignored`: that shell
 * also traps SIGTERM away, so it ignores it even under an init.
 */
export type RunnerSigterm = 'node' | 'shell-pid1' | 'ignored';

/**
 * The TypeScript echo runner as an image (`pnpm deploy` of the example with
 * its runtime dependencies), answering as `model`. `crash` makes an image
 * whose runner dies on start; `sigterm` picks its main process.
 */
export function buildEchoRunnerImage(
  tag: string,
  model: { name: string; version: string },
  options: { crash?: boolean; sigterm?: RunnerSigterm } = {},
): void {
  ensureNodeBaseImage();
  const context = tempDir('echo-image');
  deployPackage('@shepherd/example-echo-runner', join(context, 'app'));
  writeFileSync(join(context, 'config.yaml'), `runner: /app/dist/echo-runner.js\nmodel: {name: ${model.name}, version: ${model.version}}\n`);
  const runner = 'node /app/node_modules/@shepherd/runner/dist/cli.js -p 9999 /config.yaml';
  const shell = { node: '', 'shell-pid1': `${runner} & wait`, ignored: `trap '' TERM; ${runner} & wait` }[options.sigterm ?? 'node'];
  const command = options.crash
    ? '["node", "-e", "console.error(\'model weights missing\'); process.exit(3)"]'
    : shell
      ? JSON.stringify(['/bin/sh', '-c', shell])
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
