import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, deployPackage } from '../src/docker';
import { tempDir } from '../src/names';

const modules = join(REPO, 'node_modules');
const stateFiles = () =>
  Object.fromEntries(
    readdirSync(modules)
      .filter((file) => file === '.modules.yaml' || file.startsWith('.pnpm-workspace-state'))
      .map((file) => [file, readFileSync(join(modules, file), 'utf8')]),
  );

describe('deployPackage', () => {
  it('copies the package with its production dependencies and leaves the workspace able to run its dev tools', () => {
    const before = stateFiles();
    const dest = join(tempDir('deploy'), 'app');
    deployPackage('@shepherd/contracts', dest);
    expect(existsSync(join(dest, 'package.json'))).toBe(true);
    expect(existsSync(join(dest, 'node_modules/zod'))).toBe(true);
    expect(stateFiles()).toEqual(before);
    // pnpm checks the workspace before running a binary: with the deploy's state left behind it pruned turbo.
    const run = spawnSync('pnpm', ['exec', 'turbo', '--version'], { cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: '' } });
    expect(run.stderr + run.stdout).not.toContain('not found');
    expect(run.status).toBe(0);
    expect(existsSync(join(modules, '.bin/turbo'))).toBe(true);
  }, 120_000);
});
