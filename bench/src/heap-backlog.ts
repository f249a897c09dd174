import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { benchRedis } from './procs';
import { submitBacklog } from './scenarios';
import { LocalShepherd } from './shepherd';

// `node bench/dist/heap-backlog.js [--snapshots] [--alloc]`, after `pnpm
// --filter @shepherd/bench build`, on REDIS_URL (else a private
// redis-server, like the bench). The bench's backlog measurement
// (rssWithBacklog: a fresh gateway, 10,000 start-jobs from 32 clients, no
// worker) with the gateway's memory read from inside through a preloaded
// probe (heap-probe.cjs): RSS as the bench reads it and while the backlog
// builds, then after a full GC, with heapUsed and external. --snapshots:
// heap snapshots before and after the submits compared by constructor
// (writing one costs the gateway RSS of its own: read RSS from a run
// without). --alloc: what the submits allocate, collected or not, by
// function and by package. HEAP_JOBS: the number of jobs (default 10,000);
// HEAP_TOP: rows per table (25). Not part of the bench run.

const JOBS = Number(process.env.HEAP_JOBS ?? 10_000);
const SNAPSHOTS = process.argv.includes('--snapshots');
const ALLOCATIONS = process.argv.includes('--alloc');
const TOP = Number(process.env.HEAP_TOP ?? 25);
const MB = 1024 * 1024;

interface ProbeReport {
  seq: number;
  memory: NodeJS.MemoryUsage;
  spaces: Array<{ space_name: string; space_used_size: number; physical_space_size: number }>;
  snapshot?: string;
  profile?: string;
}

/** Talks to heap-probe.cjs in the gateway through a control file. */
class Probe {
  readonly dir = join(tmpdir(), `shepherd-heap-${process.pid}`);
  private seq = 0;

  constructor() {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  env(): NodeJS.ProcessEnv {
    const preload = `--require ${resolve(__dirname, '../src/heap-probe.cjs')}`;
    return { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, preload].filter(Boolean).join(' '), HEAP_PROBE_DIR: this.dir };
  }

  async ask(pid: number, command: 'mem' | 'gc' | 'snap' | 'alloc' | 'allocstop', name = ''): Promise<ProbeReport> {
    const seq = ++this.seq;
    writeFileSync(join(this.dir, 'control'), `${command}:${seq}:${name}`);
    const file = join(this.dir, `${pid}.json`);
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (existsSync(file)) {
        const report = JSON.parse(readFileSync(file, 'utf8')) as ProbeReport;
        if (report.seq === seq) return report;
      }
      if (Date.now() > deadline) throw new Error(`the probe in ${pid} did not answer ${command}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** VmRSS and its parts (anonymous memory, mapped files) from /proc, in MB. */
function rss(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

function line(label: string, pid: number, report: ProbeReport): string {
  const r = rss(pid);
  const m = report.memory;
  const spaces = report.spaces
    .filter((s) => s.physical_space_size > MB)
    .map((s) => `${s.space_name.replace('_space', '')} ${(s.space_used_size / MB).toFixed(1)}/${(s.physical_space_size / MB).toFixed(1)}`)
    .join(', ');
  return (
    `${label.padEnd(28)} rss ${r.rss.toFixed(1)} MB (anon ${r.anon.toFixed(1)}, file ${r.file.toFixed(1)}), heapUsed ${(m.heapUsed / MB).toFixed(1)}, ` +
    `heapTotal ${(m.heapTotal / MB).toFixed(1)}, external ${(m.external / MB).toFixed(1)} (arrayBuffers ${(m.arrayBuffers / MB).toFixed(1)})\n` +
    `${''.padEnd(28)} spaces used/physical MB: ${spaces}`
  );
}

async function main(): Promise<void> {
  const redis = await benchRedis();
  const probe = new Probe();
  const shepherd = new LocalShepherd(redis.url, ['s1'], { env: probe.env() });
  const print = (text: string) => process.stdout.write(`${text}\n`);
  try {
    await shepherd.start();
    const pid = shepherd.gateway?.pid as number;
    print(line('idle', pid, await probe.ask(pid, 'mem')));
    const before = SNAPSHOTS ? await probe.ask(pid, 'snap', 'before') : undefined;
    if (before) print(line('idle, after GC (snapshot)', pid, before));
    if (ALLOCATIONS) await probe.ask(pid, 'alloc');
    const started = performance.now();
    // The bench reads RSS once, at the end, wherever V8's collection cycle is then: the mean and the peak while the backlog builds say more.
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(rss(pid).rss), 200);
    await submitBacklog(shepherd, JOBS).finally(() => clearInterval(sampler));
    const seconds = (performance.now() - started) / 1000;
    const late = samples.slice(Math.floor(samples.length / 2));
    const mean = late.reduce((sum, value) => sum + value, 0) / Math.max(1, late.length);
    print(`rss while submitting: peak ${Math.max(...samples).toFixed(1)} MB, mean over the second half ${mean.toFixed(1)} MB (${samples.length} samples)`);
    print(`${JOBS} jobs submitted in ${seconds.toFixed(1)} s`);
    if (ALLOCATIONS) print(summariseAllocations((await probe.ask(pid, 'allocstop', 'submits')).profile as string, JOBS));
    print(line('backlog (as the bench)', pid, await probe.ask(pid, 'mem')));
    print(line('backlog, after GC', pid, await probe.ask(pid, 'gc')));
    await new Promise((r) => setTimeout(r, 5000));
    print(line('backlog, GC, 5 s later', pid, await probe.ask(pid, 'gc')));
    if (before?.snapshot) {
      const after = await probe.ask(pid, 'snap', 'after');
      print(compareSnapshots(before.snapshot, after.snapshot as string, JOBS));
    }
  } finally {
    await shepherd.stop();
    await redis.stop();
    rmSync(probe.dir, { recursive: true, force: true });
  }
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

interface Group {
  count: number;
  size: number;
  /** A node index of an object new in the second snapshot, to show what holds it. */
  sample?: number;
}

/** The heap by constructor (objects) or kind (strings, arrays, code...): count and self size. */
class Heap {
  readonly groups = new Map<string, Group>();
  readonly ids = new Set<number>();
  private readonly snapshot: HeapSnapshot;
  private readonly nodeSize: number;
  private readonly edgeSize: number;
  /** The first strong retainer of each node (node index), and the edge's name. */
  private readonly retainer: Int32Array;
  private readonly retainerEdge: Int32Array;

  constructor(file: string, known?: Set<number>) {
    this.snapshot = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
    const { meta } = this.snapshot.snapshot;
    const { nodes, edges } = this.snapshot;
    this.nodeSize = meta.node_fields.length;
    this.edgeSize = meta.edge_fields.length;
    const count = nodes.length / this.nodeSize;
    this.retainer = new Int32Array(count).fill(-1);
    this.retainerEdge = new Int32Array(count).fill(-1);
    const [idField, sizeField, edgeCountField] = ['id', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f)) as [number, number, number];
    const [edgeType, toField] = ['type', 'to_node'].map((f) => meta.edge_fields.indexOf(f)) as [number, number];
    const weak = meta.edge_types[0].indexOf('weak');
    let edge = 0;
    for (let n = 0; n < count; n++) {
      const base = n * this.nodeSize;
      const id = nodes[base + idField] as number;
      this.ids.add(id);
      const key = this.key(n);
      const group = this.groups.get(key) ?? { count: 0, size: 0 };
      group.count += 1;
      group.size += nodes[base + sizeField] as number;
      if (known && group.sample === undefined && !known.has(id)) group.sample = n;
      this.groups.set(key, group);
      const edgeCount = nodes[base + edgeCountField] as number;
      for (let e = 0; e < edgeCount; e++, edge += this.edgeSize) {
        if (edges[edge + edgeType] === weak) continue;
        const to = (edges[edge + toField] as number) / this.nodeSize;
        if (this.retainer[to] === -1) {
          this.retainer[to] = n;
          this.retainerEdge[to] = edge;
        }
      }
    }
  }

  key(n: number): string {
    const { meta } = this.snapshot.snapshot;
    const base = n * this.nodeSize;
    const type = meta.node_types[0][this.snapshot.nodes[base] as number] as string;
    const name = this.snapshot.strings[this.snapshot.nodes[base + 1] as number] ?? '';
    if (type === 'object' || type === 'native' || type === 'closure') return `${type === 'object' ? '' : `${type} `}${name.slice(0, 60)}`;
    if (type === 'array' || type === 'hidden') return `(${type} ${name.slice(0, 40)})`;
    return `(${type})`;
  }

  /** Who holds node `n`: up to `depth` first retainers, nearest first. */
  path(n: number, depth = 8): string {
    const { meta } = this.snapshot.snapshot;
    const nameField = meta.edge_fields.indexOf('name_or_index');
    const typeField = meta.edge_fields.indexOf('type');
    const steps: string[] = [];
    let at = n;
    for (let i = 0; i < depth && this.retainer[at] !== -1; i++) {
      const edge = this.retainerEdge[at] as number;
      const type = meta.edge_types[0][this.snapshot.edges[edge + typeField] as number];
      const raw = this.snapshot.edges[edge + nameField] as number;
      const name = type === 'element' || type === 'hidden' ? `[${raw}]` : `.${this.snapshot.strings[raw]}`;
      at = this.retainer[at] as number;
      steps.push(`${this.key(at)}${name}`);
    }
    return steps.join(' ← ');
  }
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

/** Where the bytes allocated during the submits were allocated: by function (self and with callees) and by package. */
function summariseAllocations(file: string, jobs: number): string {
  const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: SamplingNode };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const packages = new Map<string, number>();
  let total = 0;
  const add = (map: Map<string, number>, key: string, size: number) => map.set(key, (map.get(key) ?? 0) + size);
  const frame = (node: SamplingNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || '(anonymous)'} ${url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/|^.*\/work\/main\//, '')}:${lineNumber + 1}`;
  };
  const packageOf = (url: string) => {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url) ?? /\/(apps\/[^/]+|packages\/[^/]+)\//.exec(url);
    return match?.[1] ?? (url.startsWith('node:') ? 'node' : url || '(vm)');
  };
  const walk = (node: SamplingNode, stack: string[]): number => {
    const key = frame(node);
    const sizes: number = node.selfSize + node.children.reduce((sum: number, child) => sum + walk(child, stack.includes(key) ? stack : [...stack, key]), 0);
    total += node.selfSize;
    add(self, key, node.selfSize);
    add(packages, packageOf(node.callFrame.url), node.selfSize);
    if (!stack.includes(key)) add(inclusive, key, sizes);
    return sizes;
  };
  walk(head, []);
  const top = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([key, size]) => `${(size / MB).toFixed(1).padStart(8)} ${String(Math.round(size / jobs)).padStart(7)}  ${key}`);
  return [
    `allocated during the submits (sampled): ${(total / MB).toFixed(0)} MB, ${Math.round(total / jobs)} bytes per job`,
    '', `by package (self)      MB  B/job`, ...top(packages),
    '', `by function (self)     MB  B/job`, ...top(self),
    '', `by function (with callees)`, ...top(inclusive).slice(1),
  ].join('\n');
}

function compareSnapshots(beforeFile: string, afterFile: string, jobs: number): string {
  const before = new Heap(beforeFile);
  const after = new Heap(afterFile, before.ids);
  const rows = [...after.groups.entries()].map(([key, group]) => {
    const old = before.groups.get(key) ?? { count: 0, size: 0 };
    return { key, count: group.count - old.count, size: group.size - old.size, sample: group.sample };
  });
  const total = rows.reduce((sum, row) => sum + row.size, 0);
  const text = [`heap growth over ${jobs} jobs (self sizes, after GC): ${(total / MB).toFixed(2)} MB, ${((total / jobs) | 0)} bytes per job`];
  text.push('', `top ${TOP} by size difference:`, `${'MB'.padStart(8)} ${'count'.padStart(9)}  constructor / kind`);
  for (const row of [...rows].sort((a, b) => b.size - a.size).slice(0, TOP)) {
    text.push(`${(row.size / MB).toFixed(2).padStart(8)} ${String(row.count).padStart(9)}  ${row.key}`);
  }
  text.push('', `top ${TOP} by count difference:`);
  for (const row of [...rows].sort((a, b) => b.count - a.count).slice(0, TOP)) {
    text.push(`${(row.size / MB).toFixed(2).padStart(8)} ${String(row.count).padStart(9)}  ${row.key}`);
  }
  text.push('', 'what holds a new object of the top groups by count:');
  for (const row of [...rows].sort((a, b) => b.count - a.count).slice(0, 10)) {
    if (row.sample !== undefined && row.count > jobs / 10) text.push(`  ${row.key}: ${after.path(row.sample)}`);
  }
  return text.join('\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
