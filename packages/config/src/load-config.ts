import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import yaml from 'js-yaml';
import type { z } from 'zod';
import { ConfigSchema, type ShepherdConfig } from './config.schema';
import { ConfigError } from './errors';
import { substituteEnv } from './substitute';

export interface LoadOptions {
  /** Environment for `$VAR` substitution and DEBUG; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(file: string, options: LoadOptions = {}): ShepherdConfig {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${path}: cannot read the config file (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  return parseConfig(text, path, options);
}

/** Parses config text; `file` only names the source in errors. */
export function parseConfig(text: string, file: string, options: LoadOptions = {}): ShepherdConfig {
  const env = options.env ?? process.env;
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: file }) ?? {};
  } catch (error) {
    throw new ConfigError(`${file}: not valid YAML: ${(error as Error).message}`);
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${file}: (root): expected a mapping of keys, found ${describe(raw)}`);
  }
  const substituted = substituteEnv(raw, env, file);
  const result = ConfigSchema.safeParse(substituted);
  if (!result.success) throw new ConfigError(formatIssues(file, substituted, result.error));
  const debugEnv = env.DEBUG;
  const debug = result.data.debug || (debugEnv !== undefined && !['', '0', 'false'].includes(debugEnv.toLowerCase()));
  return { ...result.data, debug };
}

function formatIssues(file: string, raw: unknown, error: z.ZodError): string {
  const lines = error.issues.map((issue) => {
    const keys = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const where = keys.length ? `${keys.join('.')}: ` : '';
      return `${where}unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    }
    const found = describe(valueAt(raw, keys));
    return `${keys.join('.') || '(root)'}: ${expectation(issue)}, found ${found}`;
  });
  return `Invalid config ${file}:\n  ${lines.join('\n  ')}`;
}

/** What the schema wanted, in the same words whatever the kind of issue. */
function expectation(issue: z.core.$ZodIssue): string {
  if ('options' in issue && Array.isArray(issue.options)) return `expected one of ${issue.options.map((o) => JSON.stringify(o)).join(', ')}`;
  if (issue.code === 'invalid_value') return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input')) return `expected ${issue.expected}`;
  return issue.message.replace(/^(Invalid input|Too small|Too big|Invalid string): /, '');
}

function valueAt(value: unknown, keys: string[]): unknown {
  let current = value;
  for (const key of keys) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'a list' : 'a mapping';
  return JSON.stringify(value);
}
