import { z } from 'zod';

// Environment substitution yields strings, so number and boolean fields also
// take their plain string spelling ("9001", "true").

export function intField(min: number, max: number) {
  return z.preprocess(
    (value) => (typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value),
    z.number().int().min(min).max(max),
  );
}

export function boolField() {
  return z.preprocess((value) => {
    if (typeof value !== 'string') return value;
    const lower = value.trim().toLowerCase();
    if (['true', 'yes', '1', 'on'].includes(lower)) return true;
    if (['false', 'no', '0', 'off', ''].includes(lower)) return false;
    return value;
  }, z.boolean());
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

/** A byte size: a number of bytes, or a string such as "10mb", "512k", "1.5gb". */
export function sizeField() {
  return z.preprocess(
    (value) => {
      if (typeof value !== 'string') return value;
      const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
      const unit = UNITS[match?.[2]?.toLowerCase() ?? 'x'];
      return match && unit !== undefined ? Math.floor(Number(match[1]) * unit) : value;
    },
    z.number({ error: 'expected a size such as 1048576, "512kb", "10mb" or "1gb"' }).int().positive(),
  );
}

export const nonEmpty = () => z.string().min(1);

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration in milliseconds: a number of seconds, or a string such as "500ms", "10s", "2m", "1h", "7d". */
export function durationField() {
  return z.preprocess(
    (value) => {
      if (typeof value === 'number') return Math.round(value * 1000);
      if (typeof value !== 'string') return value;
      const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
      return match ? Math.round(Number(match[1]) * (DURATION_UNITS[match[2]?.toLowerCase() ?? ''] ?? 1000)) : value;
    },
    z.number({ error: 'expected a duration such as 30, "500ms", "10s" or "2m"' }).int().nonnegative(),
  );
}
