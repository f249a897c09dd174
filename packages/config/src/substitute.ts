import { ConfigError } from './errors';

const VARIABLE = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/**
 * Replaces `$NAME` and `${NAME}` in every string scalar of the parsed YAML
 * (keys are left alone); `$$` stands for a literal `$` (a shell command in a
 * sheep's `command`, say). An unset variable is an error naming it and the key.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, file: string, path: string[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (match, braced: string | undefined, bare: string | undefined) => {
      if (match === '$$') return '$';
      const name = (braced ?? bare) as string;
      const found = env[name];
      if (found === undefined) {
        throw new ConfigError(`${file}: ${path.join('.') || '(root)'}: environment variable ${name} is not set`);
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => substituteEnv(item, env, file, [...path, String(index)]));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, substituteEnv(item, env, file, [...path, key])]),
    );
  }
  return value;
}
