/** Latency summary of one series, in milliseconds. */
export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  n: number;
}

/**
 * Nearest-rank percentiles of `samplesMs` (the input is not modified).
 * An empty series gives NaN everywhere and `n: 0`.
 */
export function percentiles(samplesMs: readonly number[]): Percentiles {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return { p50: NaN, p95: NaN, p99: NaN, mean: NaN, n: 0 };
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const rank = (p: number): number => sorted[Math.min(n, Math.max(1, Math.ceil((p / 100) * n))) - 1] ?? NaN;
  const mean = sorted.reduce((sum, x) => sum + x, 0) / n;
  return { p50: rank(50), p95: rank(95), p99: rank(99), mean, n };
}

/** `12.3 ms`, `1.25 s`; a dash for NaN (an empty series). */
export function formatMs(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 1000) return `${(x / 1000).toFixed(2)} s`;
  if (x >= 100) return `${x.toFixed(0)} ms`;
  if (x >= 10) return `${x.toFixed(1)} ms`;
  return `${x.toFixed(2)} ms`;
}

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [head, ...rows].map(line).join('\n');
}
