// CPU time of the processes under test, read from /proc, and the private
// Redis the bench runs on (the machine's shared one carries others' load).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServerHandle } from '@shepherd/testing';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface Stat {
  ppid: number;
  /** utime + stime, in seconds. */
  cpu: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces or parentheses: split after its last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / CLK_TCK };
  } catch {
    return undefined; // gone
  }
}

/** CPU seconds (user + system) a process has used so far; 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  return stat(pid)?.cpu ?? 0;
}

/** Every live descendant of `pid` (children, their children, ...). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const child = Number(name);
    if (!Number.isInteger(child)) continue;
    const ppid = stat(child)?.ppid;
    if (ppid !== undefined) children.set(ppid, [...(children.get(ppid) ?? []), child]);
  }
  const found: number[] = [];
  const walk = (parent: number): void => {
    for (const child of children.get(parent) ?? []) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** The processes of one system under test, by kind: gateway, workers, runners, redis, s3. */
export type ProcessKinds = Record<string, number[]>;

/** CPU seconds of each pid of each kind at one moment. */
export type CpuSnapshot = Record<string, Map<number, number>>;

export function snapshot(kinds: ProcessKinds): CpuSnapshot {
  return Object.fromEntries(Object.entries(kinds).map(([kind, pids]) => [kind, new Map(pids.map((pid) => [pid, cpuSeconds(pid)]))]));
}

/**
 * CPU seconds used between two snapshots, by kind. A process only in `after`
 * (started during the phase) counts from zero; one gone by `after` counts
 * nothing (its time is lost to the bench: keep processes alive across a phase).
 */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const used: Record<string, number> = {};
  for (const [kind, pids] of Object.entries(after)) {
    let sum = 0;
    for (const [pid, seconds] of pids) sum += Math.max(0, seconds - (before[kind]?.get(pid) ?? 0));
    used[kind] = sum;
  }
  return used;
}

/** Runs `work` and returns its value with the CPU seconds each kind of process used meanwhile. */
export async function measureCpu<T>(kinds: () => ProcessKinds, work: () => Promise<T>): Promise<{ value: T; cpu: Record<string, number> }> {
  const before = snapshot(kinds());
  const value = await work();
  // Re-list the processes: a runner started during the phase is counted too.
  return { value, cpu: cpuBetween(before, snapshot(kinds())) };
}

export interface BenchRedis {
  url: string;
  /** The redis-server's pid, when it runs on this machine. */
  pid?: number;
  stop(): Promise<void>;
}

/**
 * A private redis-server on a free port, so its CPU is the bench's alone; or
 * REDIS_URL when given (its pid from INFO, if it runs here; its CPU then
 * includes whatever else uses it).
 */
export async function benchRedis(url = process.env.REDIS_URL): Promise<BenchRedis> {
  let server: RedisServerHandle | undefined;
  if (!url) {
    server = await startRedisServer();
    url = server.url;
  }
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const info = await redis.info('server');
  redis.disconnect();
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  const local = Number.isInteger(pid) && stat(pid) !== undefined;
  return { url, pid: local ? pid : undefined, stop: async () => server?.stop() };
}
