import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import { Router } from 'zeromq';
import { freePort, tempDir, waitFor } from '@shepherd/testing';
import { BaseRunner, RunnerClient, serveRunner, type ServeOptions } from '../src';

// serveRunner and RunnerClient in this process, over real sockets.

const root = tempDir('serve-runner');
const cleanups: (() => unknown)[] = [];
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Serves `runner` on a free port; stopped (and the client closed) after the test. */
async function serve(runner: BaseRunner): Promise<{ client: RunnerClient; served: Promise<void>; stop: () => void }> {
  const port = await freePort();
  const controller = new AbortController();
  const options: ServeOptions = { port, host: '127.0.0.1', signal: controller.signal, handleSignals: false, log: () => undefined };
  const served = serveRunner(runner, options);
  const client = new RunnerClient({ port });
  client.connect();
  cleanups.push(() => served, () => controller.abort(), () => client.close());
  return { client, served, stop: () => controller.abort() };
}

class RecordingRunner extends BaseRunner {
  readonly started: string[] = [];
  running = 0;
  maxRunning = 0;
  constructor(private readonly work: (jobId: string) => Promise<void> | void = () => undefined) {
    super({}, '/nowhere/config.yaml');
  }
  async processJob(_inputDir: string, _outputDir: string, jobId: string): Promise<void> {
    this.started.push(jobId);
    this.maxRunning = Math.max(this.maxRunning, ++this.running);
    try {
      await this.work(jobId);
    } finally {
      this.running--;
    }
  }
}

describe('serveRunner', () => {
  it('listens only once load() has finished', async () => {
    const loading = gate();
    const runner = new (class extends RecordingRunner {
      load(): Promise<void> {
        return loading.promise;
      }
    })();
    const { client } = await serve(runner);
    await expect(client.waitListening(300)).rejects.toMatchObject({ code: 'not-listening' });
    loading.open();
    await client.waitListening(10_000);
    await expect(client.submit('j1', root)).resolves.toEqual({ kind: 'done' });
  });

  it('passes <io_data_root>/<job_id>/inputs and outputs and the job id', async () => {
    const seen: string[][] = [];
    const runner = new (class extends BaseRunner {
      processJob(inputDir: string, outputDir: string, jobId: string): void {
        seen.push([inputDir, outputDir, jobId]);
      }
    })({}, 'c.yaml');
    const { client } = await serve(runner);
    await client.submit('job-7', '/data/sheep_1');
    expect(seen).toEqual([['/data/sheep_1/job-7/inputs', '/data/sheep_1/job-7/outputs', 'job-7']]);
  });

  it('runs one job at a time in arrival order', async () => {
    const runner = new RecordingRunner(() => new Promise((resolve) => setTimeout(resolve, 10)));
    const { client } = await serve(runner);
    const ids = ['a', 'b', 'c', 'd', 'e'];
    await Promise.all(ids.map((id) => client.submit(id, root)));
    expect(runner.started).toEqual(ids);
    expect(runner.maxRunning).toBe(1);
  });

  it('names the error by its class when name was left as Error, and copes with non-Error throws', async () => {
    class BadInput extends Error {}
    const runner = new RecordingRunner((jobId) => {
      if (jobId === 'class') throw new BadInput('too short');
      if (jobId === 'named') throw Object.assign(new Error('x'), { name: 'ValueError' });
      throw 'just a string';
    });
    const { client } = await serve(runner);
    await expect(client.submit('class', root)).resolves.toMatchObject({ message: 'BadInput: too short', exceptionType: 'BadInput' });
    await expect(client.submit('named', root)).resolves.toMatchObject({ message: 'ValueError: x', exceptionType: 'ValueError' });
    await expect(client.submit('string', root)).resolves.toEqual({
      kind: 'error',
      message: 'Error: just a string',
      exceptionType: 'Error',
      exceptionTraceback: '',
    });
  });

  it('on abort finishes the job in hand, takes no other and resolves', async () => {
    const inHand = gate();
    const runner = new RecordingRunner((jobId) => (jobId === 'first' ? inHand.promise : undefined));
    const { client, served, stop } = await serve(runner);
    const first = client.submit('first', root);
    const second = client.submit('second', root);
    await waitFor(() => runner.started.length > 0, 10_000, 'the first job to start');
    stop();
    inHand.open();
    await expect(first).resolves.toEqual({ kind: 'done' });
    await served;
    expect(runner.started).toEqual(['first']);
    client.close();
    await expect(second).rejects.toMatchObject({ code: 'closed' });
  });

  it('fails with a clear error when the port is taken', async () => {
    const { client } = await serve(new RecordingRunner());
    await client.waitListening(10_000);
    const port = Number(client.address.split(':').pop());
    await expect(
      serveRunner(new RecordingRunner(), { port, host: '127.0.0.1', handleSignals: false, log: () => undefined }),
    ).rejects.toThrow(`Cannot bind tcp://127.0.0.1:${port}`);
  });
});

describe('RunnerClient against a runner speaking the original bytes', () => {
  it('matches replies by job id, ignores unknown ones and reads nulls', async () => {
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const warnings: string[] = [];
    const client = new RunnerClient({ port, onWarning: (w) => warnings.push(w) });
    cleanups.push(() => router.close(), () => client.close());
    client.connect();
    const first = client.submit('first', root);
    const second = client.submit('second', root);
    const [identity1] = await router.receive();
    const [identity2] = await router.receive();
    const reply = (identity: Buffer | undefined, json: string): Promise<void> => router.send([identity ?? '', json]);
    await reply(identity1, '{"message": {"identity": "", "job_id": "stranger", "message_type": "DoneMessage"}}');
    await reply(identity2, '{"message": {"identity": "", "job_id": "second", "message_type": "DoneMessage"}}');
    await reply(
      identity1,
      '{"message": {"identity": "", "job_id": "first", "message_type": "ErrorMessage", "message": "KeyError: \'x\'", "exception_type": "KeyError", "exception_traceback": null}}',
    );
    await expect(second).resolves.toEqual({ kind: 'done' });
    await expect(first).resolves.toEqual({ kind: 'error', message: "KeyError: 'x'", exceptionType: 'KeyError', exceptionTraceback: '' });
    expect(warnings).toEqual([expect.stringContaining('unknown job stranger')]);
  });

  it('reports junk from the runner as warnings with details and keeps answering jobs', async () => {
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const warnings: { message: string; details?: Record<string, unknown> }[] = [];
    const client = new RunnerClient({ port, onWarning: (message, details) => warnings.push({ message, details }) });
    cleanups.push(() => router.close(), () => client.close());
    client.connect();
    const job = client.submit('real', root);
    const [identity] = await router.receive();
    const send = (...frames: (string | Buffer)[]): Promise<void> => router.send([identity ?? '', ...frames]);
    await send('not json at all');
    await send(Buffer.from([0xff, 0xfe, 0x00]));
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "ProgressMessage"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "InputMessage", "io_data_root": "/x"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "DoneMessage"}}', 'a second frame');
    await send('{"message": {"identity": "", "job_id": "ghost", "message_type": "ErrorMessage", "message": "x"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "DoneMessage"}}');
    await expect(job).resolves.toEqual({ kind: 'done' });
    const address = `tcp://127.0.0.1:${port}`;
    expect(warnings).toEqual([
      { message: expect.stringContaining('not JSON'), details: { address, error: expect.stringContaining('not JSON') } },
      { message: expect.stringContaining('not valid UTF-8'), details: { address, error: expect.stringContaining('UTF-8') } },
      { message: expect.stringContaining('message_type'), details: { address, error: expect.stringContaining('ProgressMessage') } },
      { message: expect.stringContaining('Ignored an InputMessage'), details: { address, jobId: 'real', messageType: 'InputMessage' } },
      { message: expect.stringContaining('reply of 2 frames'), details: { address, frames: 2 } },
      { message: expect.stringContaining('unknown job ghost'), details: { address, jobId: 'ghost', messageType: 'ErrorMessage' } },
    ]);
  });

  it('survives an onWarning that throws', async () => {
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const client = new RunnerClient({
      port,
      onWarning: () => {
        throw new Error('logger broke');
      },
    });
    cleanups.push(() => router.close(), () => client.close());
    client.connect();
    const job = client.submit('real', root);
    const [identity] = await router.receive();
    await router.send([identity ?? '', '{"message": {"job_id": "ghost", "message_type": "DoneMessage"}}']);
    await router.send([identity ?? '', '{"message": {"job_id": "real", "message_type": "DoneMessage"}}']);
    await expect(job).resolves.toEqual({ kind: 'done' });
  });
});
