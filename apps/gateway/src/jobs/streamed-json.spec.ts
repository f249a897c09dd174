import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { NotUtf8Error, StreamedJson, type ParsedJson } from './streamed-json';

/** Feeds `bytes` cut at `cuts` (any byte offsets, inside characters too); streamed unless `wholeUpTo` says otherwise. */
async function parse(bytes: Buffer, cuts: number[] = [], streamedKey: string | undefined = 'payload', wholeUpTo = 0): Promise<ParsedJson> {
  const json = new StreamedJson(streamedKey, wholeUpTo);
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    json.write(bytes.subarray(from, cut));
    from = cut;
  }
  json.write(bytes.subarray(from));
  return json.end();
}

/** body-parser's reading: one leading byte-order mark dropped, empty text as {}, the rest JSON.parse. */
function bodyParser(text: string): unknown {
  const unmarked = text.startsWith('\ufeff') ? text.slice(1) : text;
  return unmarked === '' ? {} : JSON.parse(unmarked);
}

/** What body-parser and Buffer.from gave before: the value with a top-level string payload as '' and its bytes apart. */
function expected(text: string): ParsedJson {
  const value = bodyParser(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { value };
  const payload = (value as Record<string, unknown>).payload;
  if (typeof payload !== 'string') return { value };
  return { value: { ...value, payload: '' }, streamed: { chunks: [Buffer.from(payload, 'utf8')], size: Buffer.byteLength(payload) } };
}

function joined(parsed: ParsedJson): { value: unknown; bytes?: string } {
  return { value: parsed.value, ...(parsed.streamed ? { bytes: Buffer.concat(parsed.streamed.chunks).toString('hex') } : {}) };
}

const tricky = fc.constantFrom('x', 'é', '€', '😀', '"', '\\', '\n', '\t', '\u0000', '\u001f', '\ud800', '\udc00', '\u00a0', '\u3000', '\u2028', '\ufeff', '/', ' ');
const payloadText = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: tricky, maxLength: 80 }));
const request = fc.record(
  { job_id: fc.string(), model: fc.jsonValue({ maxDepth: 2 }), payload: fc.oneof(payloadText, fc.jsonValue({ maxDepth: 1 })), extra: fc.jsonValue({ maxDepth: 3 }) },
  { requiredKeys: [] },
);
const cutsOf = (length: number) => fc.array(fc.integer({ min: 0, max: length }), { maxLength: 12 });
const spaced = (value: unknown) => fc.constantFrom(0, 1, '\t', ' \r\n').map((space) => JSON.stringify(value, null, space) ?? 'null');

describe('StreamedJson', () => {
  it('gives what JSON.parse gives, the payload apart as its UTF-8 bytes, wherever the chunks are cut', async () => {
    const text = fc.oneof(request.chain(spaced), fc.jsonValue().chain(spaced));
    await fc.assert(
      fc.asyncProperty(
        text.chain((t) => fc.tuple(fc.constant(t), cutsOf(Buffer.byteLength(t)))),
        async ([t, cuts]) => {
          expect(joined(await parse(Buffer.from(t), cuts))).toEqual(joined(expected(t)));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('gives the same for a small body parsed whole, and refuses what JSON.parse refuses', async () => {
    const text = fc.oneof(request.chain(spaced), fc.jsonValue().chain(spaced), fc.string({ unit: 'binary', maxLength: 40 }));
    await fc.assert(
      fc.asyncProperty(
        text.chain((t) => fc.tuple(fc.constant(t), cutsOf(Buffer.byteLength(t)))),
        async ([t, cuts]) => {
          const whole = await parse(Buffer.from(t), cuts, 'payload', 64 * 1024).then(joined, (error: unknown) => error);
          const streamed = await parse(Buffer.from(t), cuts).then(joined, (error: unknown) => error);
          if (streamed instanceof Error) expect(whole).toBeInstanceOf(Error);
          else expect(whole).toEqual(streamed);
        },
      ),
      { numRuns: 300 },
    );
    await expect(parse(Buffer.from([0x7b, 0xff, 0x7d]), [], 'payload', 64 * 1024)).rejects.toBeInstanceOf(NotUtf8Error);
  });

  it('refuses what body-parser (JSON.parse) refused, and only that', async () => {
    const noise = fc.constantFrom(' ', '"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', '+', '.', 'e', 't', 'n', 'x', '\u00a0', '\u3000', '\ufeff', '\v', '\f', '\u0001', '\\u', '\\uD83D');
    const edit = fc.record({ at: fc.nat(), drop: fc.integer({ min: 0, max: 2 }), insert: fc.array(noise, { maxLength: 2 }) });
    await fc.assert(
      fc.asyncProperty(request.chain(spaced), edit, fc.array(fc.nat(), { maxLength: 6 }), async (valid, { at, drop, insert }, cuts) => {
        const i = at % (valid.length + 1);
        // An edit can leave half a surrogate pair: UTF-8 has no such thing, so the text is what its bytes say.
        const bytes = Buffer.from(valid.slice(0, i) + insert.join('') + valid.slice(i + drop));
        const text = bytes.toString();
        let parsedBefore = true;
        try {
          bodyParser(text);
        } catch {
          parsedBefore = false;
        }
        const outcome = await parse(bytes, cuts.map((c) => c % (bytes.length + 1))).then(
          (parsed) => joined(parsed),
          (error: unknown) => error,
        );
        if (parsedBefore) expect(outcome).toEqual(joined(expected(text)));
        else expect(outcome).toBeInstanceOf(Error);
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps a 4-byte character and an escaped surrogate pair whole wherever the bytes are cut', async () => {
    const text = '{"job_id":"a","payload":"😀x\\uD83D\\uDE00y\\u00e9€\\ud800z"}';
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      for (const second of [cut + 1, cut + 2, cut + 3]) {
        const parsed = await parse(bytes, second <= bytes.length ? [cut, second] : [cut]);
        expect(Buffer.concat(parsed.streamed!.chunks).toString('hex')).toBe(Buffer.from(JSON.parse(text).payload).toString('hex'));
      }
    }
  });

  it('keeps surrogate pairs whole where the payload is turned into Buffers', async () => {
    // The tokenizer cuts long strings every 256 UTF-16 units: after the 'x', every cut splits an emoji.
    const payload = `x${'😀'.repeat(100_000)}`;
    const { streamed } = await parse(Buffer.from(JSON.stringify({ payload })));
    expect(streamed!.chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(streamed!.chunks).equals(Buffer.from(payload))).toBe(true);
  });

  it('lets the last of repeated keys win, the payload included', async () => {
    const last = async (text: string) => joined(await parse(Buffer.from(text)));
    expect(await last('{"payload": "first", "payload": "second"}')).toEqual({ value: { payload: '' }, bytes: Buffer.from('second').toString('hex') });
    expect(await last('{"payload": "first", "payload": 5}')).toEqual({ value: { payload: 5 } });
    expect(await last('{"payload": null, "payload": "s"}')).toEqual({ value: { payload: '' }, bytes: Buffer.from('s').toString('hex') });
    expect(await last('{"a": {"payload": "nested"}, "payload": [1]}')).toEqual({ value: { a: { payload: 'nested' }, payload: [1] } });
    expect(await last('[{"payload": "in an array"}]')).toEqual({ value: [{ payload: 'in an array' }] });
  });

  it('refuses whitespace JSON does not allow outside strings (stream-json takes any \\s), keeps it inside', async () => {
    await expect(parse(Buffer.from('{"a": "x\u00a0",\u00a0"b": 1}'))).rejects.toThrow(/U\+00A0 outside a string/);
    await expect(parse(Buffer.from('{"a": "x\u3000\\"\u3000", "b":\u3000 1}'))).rejects.toThrow(/U\+3000 outside a string/);
    await expect(parse(Buffer.from('[1,\u2028 2]'))).rejects.toThrow(/U\+2028/);
    const kept = await parse(Buffer.from('{"a\u00a0": "\u00a0\\\\", "payload": "\u3000\\"\ufeff"}'), [3, 9]);
    expect(joined(kept)).toEqual({ value: { 'a\u00a0': '\u00a0\\', payload: '' }, bytes: Buffer.from('\u3000"\ufeff').toString('hex') });
  });

  it('makes `__proto__` an own key, as JSON.parse does', async () => {
    const { value } = await parse(Buffer.from('{"__proto__": {"polluted": 1}, "a": {"__proto__": 2}}'));
    expect(Object.keys(value as object)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });

  it('reads an empty body (or a byte-order mark alone) as {}, as body-parser did; whitespace alone is malformed', async () => {
    expect((await parse(Buffer.alloc(0))).value).toEqual({});
    expect((await parse(Buffer.from([0xef, 0xbb, 0xbf]), [1, 2])).value).toEqual({});
    expect((await parse(Buffer.from('\ufeff{"a": 1}'), [1])).value).toEqual({ a: 1 });
    await expect(parse(Buffer.from(' \n'))).rejects.toThrow();
  });

  it('tells bytes that are not UTF-8, even after a syntax error', async () => {
    for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]) {
      const bytes = Buffer.concat([Buffer.from('{"payload": "a'), Buffer.from(bad), Buffer.from('b"}')]);
      await expect(parse(bytes, [14, 15])).rejects.toBeInstanceOf(NotUtf8Error);
      await expect(parse(Buffer.concat([Buffer.from('{x '), bytes]))).rejects.toBeInstanceOf(NotUtf8Error);
    }
    await expect(parse(Buffer.from([0x7b, 0x7d, 0xe2, 0x82]))).rejects.toBeInstanceOf(NotUtf8Error);
  });

  it('parses deep nesting without recursion', async () => {
    const depth = 20_000;
    const { value } = await parse(Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`));
    expect(Array.isArray(value)).toBe(true);
  });

  it('keeps a 10 MB payload as Buffers of at most a few hundred KB', async () => {
    const payload = JSON.stringify({ blob: 'x'.repeat(10 * 1024 * 1024), note: 'é😀' });
    const bytes = Buffer.from(JSON.stringify({ job_id: 'big', payload }));
    const json = new StreamedJson('payload');
    for (let i = 0; i < bytes.length; i += 65536) json.write(bytes.subarray(i, i + 65536));
    const { value, streamed } = await json.end();
    expect(value).toEqual({ job_id: 'big', payload: '' });
    expect(streamed!.size).toBe(Buffer.byteLength(payload));
    expect(Math.max(...streamed!.chunks.map((chunk) => chunk.length))).toBeLessThanOrEqual(256 * 1024);
    expect(Buffer.concat(streamed!.chunks).equals(Buffer.from(payload))).toBe(true);
  });
});
