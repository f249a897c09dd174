import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { benchRedis } from './procs';
import { shepherdThroughput } from './scenarios';
import { LocalShepherd, REPO } from './shepherd';

// `pnpm --filter @shepherd/bench profile`: the saturated 2-sheep phase of the
// bench with the gateway and workers under --cpu-prof, summarised as self
// time per function and per package (bench/results/profile-latest.md). Only
// samples taken during the measured phase count: start-up is left out.

const JOBS = Number(process.env.PROFILE_JOBS ?? 2000);
const PROFILE_DIR = '/tmp/shepherd-prof';
const TOP = 25;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function log(message: string): void {
  process.stderr.write(`[profile] ${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

async function main(): Promise<void> {
  if (!process.env.BENCH_NODE_ARGS?.includes(PROFILE_DIR)) throw new Error(`run with BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=${PROFILE_DIR}" (pnpm profile does)`);
  rmSync(PROFILE_DIR, { recursive: true, force: true });
  mkdirSync(PROFILE_DIR, { recursive: true });
  const redis = await benchRedis();
  const shepherd = new LocalShepherd(redis.url, ['s1', 's2']);
  const spawnedAt = Date.now();
  let window: [number, number] = [0, 0];
  try {
    await shepherd.start();
    await shepherd.startWorker('s1');
    await shepherd.startWorker('s2');
    await shepherdThroughput(shepherd, 100); // warm-up: runners started, code optimised
    log(`${JOBS} jobs, 16 clients, 2 sheep`);
    const from = Date.now() - spawnedAt;
    const rate = await shepherdThroughput(shepherd, JOBS);
    window = [from, Date.now() - spawnedAt];
    log(`${rate.toFixed(0)} jobs/s`);
  } finally {
    await shepherd.stop();
    await redis.stop();
  }
  const sections: string[] = [];
  for (const file of readdirSync(PROFILE_DIR).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const profile = JSON.parse(readFileSync(join(PROFILE_DIR, file), 'utf8')) as CpuProfile;
    sections.push(summarise(file, profile, window));
  }
  const text = [
    '# Where Shepherd spends CPU per job',
    '',
    `${new Date().toISOString()}: ${JOBS} echo jobs, 16 clients, 2 sheep, filesystem storage; --cpu-prof on the gateway and each worker; samples during the measured phase only.`,
    'Self time: the function itself, not what it calls. Package: node_modules package, node internals, or Shepherd\'s own code.',
    '',
    ...sections,
  ].join('\n');
  const out = join(REPO, 'bench/results/profile-latest.md');
  writeFileSync(out, `${text}\n`);
  log(`wrote ${relative(REPO, out)}; raw profiles in ${PROFILE_DIR}`);
}

/** Self time by function and by package, over the samples within `window` (ms since spawn). */
function summarise(file: string, profile: CpuProfile, [from, to]: [number, number]): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  let total = 0;
  let time = profile.startTime;
  profile.samples.forEach((id, i) => {
    time += profile.timeDeltas[i] ?? 0;
    const sinceStart = (time - profile.startTime) / 1000;
    const next = profile.timeDeltas[i + 1] ?? 0;
    if (sinceStart < from || sinceStart > to) return;
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') return;
    total += next;
    const where = shortUrl(url);
    const key = `${functionName || '(anonymous)'} ${where}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + next);
    const pkg = packageOf(url, functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + next);
    // Shepherd's own functions on the stack, each counted once per sample: what a call costs with all it calls.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || !isShepherd(frame.url)) continue;
      const name = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + next);
    }
  });
  const table = (map: Map<string, number>, title: string) => [
    `| ${title} | ms | share |`,
    '|---|---|---|',
    ...[...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([name, us]) => `| \`${name.replace(/\|/g, '\\|')}\` | ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)}% |`),
  ];
  const kind = /\.(\d+)\.\d+\.cpuprofile$/.exec(file)?.[1] ?? file;
  return [`## ${file} (pid ${kind}): ${(total / 1000).toFixed(0)} ms busy in the phase`, '', ...table(byPackage, 'package'), '', ...table(byFunction, 'function (self)'), '', ...table(inclusive, 'Shepherd function (with what it calls)'), ''].join('\n');
}

function isShepherd(url: string): boolean {
  const path = url.replace(/^file:\/\//, '');
  return path.startsWith(REPO) && !path.includes('node_modules') && !path.includes('/bench/');
}

function shortUrl(url: string): string {
  if (!url) return '';
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) return path.slice(modules + 'node_modules/'.length);
  return path.startsWith(REPO) ? relative(REPO, path) : path;
}

function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const path = url.replace(/^file:\/\//, '');
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules)/.exec(path);
  if (match?.[1]) return match[1];
  return path.startsWith(REPO) ? `shepherd ${relative(REPO, path).split('/').slice(0, 2).join('/')}` : path;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
