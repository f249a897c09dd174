import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';

/** Processes a test starts, each logging to `<dir>/<name>.log`, all SIGKILLed at the end. */
export interface LoggedProcesses {
  start(name: string, command: string, args: string[]): ChildProcess;
  killAll(): Promise<void>;
}

export function loggedProcesses(dir: string): LoggedProcesses {
  const children = new Set<ChildProcess>();
  return {
    start(name, command, args) {
      const fd = openSync(join(dir, `${name}.log`), 'a');
      const child = spawn(command, args, { stdio: ['ignore', fd, fd], env: { ...process.env } });
      closeSync(fd);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    async killAll() {
      await Promise.all(
        [...children].map(
          (child) =>
            new Promise<void>((resolve) => {
              child.once('exit', () => resolve());
              child.kill('SIGKILL');
            }),
        ),
      );
    },
  };
}
