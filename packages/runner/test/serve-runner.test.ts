import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import { Dealer, Router } from 'zeromq';
import { freePort, tempDir, waitFor } from '@shepherd/testing';
import { BaseRunner, decodeMessage, encodeMessage, PROGRESS_PEER_PREFIX, RunnerClient, serveRunner, type ServeOptions } from '../src';

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

type ProgressSeen = [jobId: string, progress: number, message: string | null];

/** Serves `runner` on a free port; stopped (and the client closed) after the test. */
async function serve(
  runner: BaseRunner,
  clientOptions: { onProgress?: (...seen: ProgressSeen) => void } = {},
): Promise<{ client: RunnerClient; served: Promise<void>; stop: () => void; port: number }> {
  const port = await freePort();
  const controller = new AbortController();
  const options: ServeOptions = { port, host: '127.0.0.1', signal: controller.signal, handleSignals: false, log: () => undefined };
  const served = serveRunner(runner, options);
  const client = new RunnerClient({ port, ...clientOptions });
  client.connect();
  cleanups.push(() => served, () => controller.abort(), () => client.close());
  return { client, served, stop: () => controller.abort(), port };
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

/** Reports progress as it works, as a model would between epochs. */
class ProgressRunner extends BaseRunner {
  constructor(private readonly reports: [number, string?][]) {
    super({}, '/nowhere/config.yaml');
  }
  async processJob(): Promise<void> {
    for (const [fraction, message] of this.reports) {
      this.progress(fraction, message);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

describe('progress from a TypeScript runner (this.progress)', () => {
  it('reaches the client in order, ahead of the job\'s answer', async () => {
    const events: string[] = [];
    const runner = new ProgressRunner([[0.1, 'loading'], [0.4, 'epoch 2'], [1.5], [-2, ''], [0.9, 'é'.repeat(1500)]]);
    const seen: ProgressSeen[] = [];
    const { client } = await serve(runner, {
      onProgress: (...report) => {
        seen.push(report);
        events.push('progress');
      },
    });
    await expect(client.submit('job-p', root).then((r) => (events.push('done'), r))).resolves.toEqual({ kind: 'done' });
    expect(seen).toEqual([
      ['job-p', 0.1, 'loading'],
      ['job-p', 0.4, 'epoch 2'],
      ['job-p', 1, null],
      ['job-p', 0, null],
      ['job-p', 0.9, 'é'.repeat(1000)],
    ]);
    expect(events).toEqual(['progress', 'progress', 'progress', 'progress', 'progress', 'done']);
  });

  it('is not sent to a sheep that did not announce it takes progress (the original sheep): it sees only the answer', async () => {
    const { port } = await serve(new ProgressRunner([[0.5, 'half'], [0.75]]));
    // The original sheep: a DEALER with no routing id (libzmq gives it a random binary one).
    const dealer = new Dealer({ linger: 0, receiveTimeout: 10_000 });
    cleanups.push(() => dealer.close());
    dealer.connect(`tcp://127.0.0.1:${port}`);
    await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: 'plain', io_data_root: root }));
    const [reply] = await dealer.receive();
    expect(reply?.toString()).toBe('{"message": {"identity": "", "job_id": "plain", "message_type": "DoneMessage"}}');
    await dealer.send(encodeMessage({ message_type: 'InputMessage', job_id: 'plain-2', io_data_root: root }));
    const [second] = await dealer.receive();
    expect(decodeMessage(second ?? '')).toMatchObject({ message_type: 'DoneMessage', job_id: 'plain-2' });
  });

  it('a client announces that it takes progress only when given onProgress, with an id of its own', async () => {
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const plain = new RunnerClient({ port });
    const taking = new RunnerClient({ port, onProgress: () => undefined });
    cleanups.push(() => router.close(), () => plain.close(), () => taking.close());
    plain.connect();
    taking.connect();
    plain.submit('a', root).catch(() => undefined);
    taking.submit('b', root).catch(() => undefined);
    const ids = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const [identity, frame] = await router.receive();
      ids.set(decodeMessage(frame ?? '').job_id, identity?.toString('latin1') ?? '');
    }
    expect(ids.get('a')?.startsWith(PROGRESS_PEER_PREFIX)).toBe(false);
    expect(ids.get('b')).toMatch(new RegExp(`^${PROGRESS_PEER_PREFIX}[0-9a-f-]{36}$`));
  });

  it('does nothing outside a job, and a non-finite fraction is logged and skipped', async () => {
    const lines: string[] = [];
    const runner = new ProgressRunner([[Number.NaN], [0.5]]);
    runner.progress(0.3, 'before any job');
    const port = await freePort();
    const controller = new AbortController();
    const served = serveRunner(runner, { port, host: '127.0.0.1', signal: controller.signal, handleSignals: false, log: (l) => lines.push(l) });
    const seen: ProgressSeen[] = [];
    const client = new RunnerClient({ port, onProgress: (...r) => seen.push(r) });
    cleanups.push(() => served, () => controller.abort(), () => client.close());
    client.connect();
    await expect(client.submit('n', root)).resolves.toEqual({ kind: 'done' });
    runner.progress(0.9, 'after the job');
    await expect(client.submit('m', root)).resolves.toEqual({ kind: 'done' });
    expect(seen).toEqual([
      ['n', 0.5, null],
      ['m', 0.5, null],
    ]);
    expect(lines).toContain('job n: progress NaN ignored: not a finite number');
  });
});

describe('RunnerClient and ProgressMessages', () => {
  it('validates them: bad ones go to onWarning, good ones are clamped; answers still arrive', async () => {
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const warnings: { message: string; details?: Record<string, unknown> }[] = [];
    const seen: ProgressSeen[] = [];
    const client = new RunnerClient({
      port,
      onWarning: (message, details) => warnings.push({ message, details }),
      onProgress: (...report) => {
        seen.push(report);
        if (report[2] === 'throw') throw new Error('callback broke');
      },
    });
    cleanups.push(() => router.close(), () => client.close());
    client.connect();
    const job = client.submit('real', root);
    const [identity] = await router.receive();
    const progress = (fields: string): Promise<void> =>
      router.send([identity ?? '', `{"message": {"identity": "", "job_id": "real", "message_type": "ProgressMessage", ${fields}}}`]);
    await progress('"progress": 0.5, "message": "half"');
    await progress('"progress": "0.6"');
    await progress('"progress": 0.7, "message": 7');
    await progress(`"progress": 0.8, "message": "${'x'.repeat(1001)}"`);
    await progress('"progress": 2');
    await progress('"progress": 0.9, "message": "throw"');
    await router.send([identity ?? '', '{"message": {"identity": "", "job_id": "ghost", "message_type": "ProgressMessage", "progress": 0.1}}']);
    await router.send([identity ?? '', '{"message": {"identity": "", "job_id": "real", "message_type": "DoneMessage"}}']);
    await expect(job).resolves.toEqual({ kind: 'done' });
    expect(seen).toEqual([
      ['real', 0.5, 'half'],
      ['real', 1, null],
      ['real', 0.9, 'throw'],
    ]);
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringMatching(/message\.progress/),
      expect.stringMatching(/message\.message/),
      expect.stringMatching(/message\.message/),
      expect.stringContaining('onProgress failed for job real: Error: callback broke'),
      expect.stringContaining('Ignored a ProgressMessage for unknown job ghost'),
    ]);
  });
});

describe('RunnerClient against a runner speaking the original bytes', () => {
  it('a client taking progress works unchanged with a strict original runner that never sends any', async () => {
    // The original runner (shepherd/runner/base_runner.py): a ROUTER that reads [identity, InputMessage]
    // and answers [identity, DoneMessage | ErrorMessage], echoing the identity frame untouched.
    const port = await freePort();
    const router = new Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const seen: ProgressSeen[] = [];
    const warnings: string[] = [];
    const client = new RunnerClient({ port, onProgress: (...r) => seen.push(r), onWarning: (w) => warnings.push(w) });
    cleanups.push(() => router.close(), () => client.close());
    client.connect();
    const serving = (async () => {
      for (let i = 0; i < 3; i++) {
        const [identity, frame] = await router.receive();
        const input = frame?.toString() ?? '';
        const jobId = /"job_id": "([^"]+)"/.exec(input)?.[1] ?? '';
        // Exactly what the original InputMessage looks like: no key it would not know.
        expect(input).toBe(`{"message": {"identity": "", "job_id": "${jobId}", "message_type": "InputMessage", "io_data_root": "${root}"}}`);
        const answer =
          jobId === 'bad'
            ? `{"message": {"identity": "", "job_id": "bad", "message_type": "ErrorMessage", "message": "ValueError: x", "exception_type": "ValueError", "exception_traceback": "Traceback..."}}`
            : `{"message": {"identity": "", "job_id": "${jobId}", "message_type": "DoneMessage"}}`;
        await router.send([identity ?? '', answer]);
      }
    })();
    await expect(client.submit('one', root)).resolves.toEqual({ kind: 'done' });
    await expect(client.submit('bad', root)).resolves.toEqual({
      kind: 'error',
      message: 'ValueError: x',
      exceptionType: 'ValueError',
      exceptionTraceback: 'Traceback...',
    });
    await expect(client.submit('two', root)).resolves.toEqual({ kind: 'done' });
    await serving;
    expect(seen).toEqual([]);
    expect(warnings).toEqual([]);
  });

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
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "StartMessage"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "InputMessage", "io_data_root": "/x"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "DoneMessage"}}', 'a second frame');
    await send('{"message": {"identity": "", "job_id": "ghost", "message_type": "ErrorMessage", "message": "x"}}');
    await send('{"message": {"identity": "", "job_id": "real", "message_type": "DoneMessage"}}');
    await expect(job).resolves.toEqual({ kind: 'done' });
    const address = `tcp://127.0.0.1:${port}`;
    expect(warnings).toEqual([
      { message: expect.stringContaining('not JSON'), details: { address, error: expect.stringContaining('not JSON') } },
      { message: expect.stringContaining('not valid UTF-8'), details: { address, error: expect.stringContaining('UTF-8') } },
      { message: expect.stringContaining('message_type'), details: { address, error: expect.stringContaining('StartMessage') } },
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
