import { isUtf8 } from 'node:buffer';
import Parser from 'stream-json/Parser';
import { Utf8Chunks } from './utf8-chunks';

/** The UTF-8 bytes of a JSON string, in the order they came: never joined into one JS string or Buffer. */
export interface Utf8Bytes {
  readonly chunks: readonly Buffer[];
  readonly size: number;
}

export interface ParsedJson {
  value: unknown;
  /** The string under the top-level key `streamedKey`, when there was one (its place in `value` holds ''). */
  streamed?: Utf8Bytes;
}

/** The bytes are not UTF-8 (or end inside a character). */
export class NotUtf8Error extends Error {}

/** Tokens as stream-json emits them with the options below. */
interface Token {
  name: string;
  value?: unknown;
}

interface Frame {
  container: Record<string, unknown> | unknown[];
  /** The key the next value goes under (objects only). */
  key: string;
}

/**
 * Whitespace to stream-json (its patterns use JavaScript's `\s`) that JSON
 * does not allow between tokens. Inside strings the non-ASCII ones are
 * plain text, and \v \f are refused by the parser anyway.
 */
const NOT_JSON_SPACE = /[\v\f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/g;
/** The UTF-8 bytes that start those characters: text without any of them needs no search. */
const NOT_JSON_SPACE_LEADS = [0x0b, 0x0c, 0xc2, 0xe1, 0xe2, 0xe3, 0xef];

/** Bodies up to this size are parsed whole by JSON.parse (see write). */
export const SMALL_BODY = 64 * 1024;

/** Text turned into bytes at least every this many UTF-16 units (and at the end of each write). */
const FLUSH_UNITS = 64 * 1024;

/**
 * Parses UTF-8 JSON fed in chunks of bytes, as JSON.parse would, through
 * stream-json's tokenizer, with one exception: the string under the
 * top-level key `streamedKey` is kept as UTF-8 bytes (its place in the
 * value holds ''). So a 10 MB string is never built, and no step handles
 * more than a chunk. A leading byte-order mark is dropped (body-parser's
 * decoder did so); empty text reads as {} (body-parser did so too).
 *
 * JSON.parse semantics kept: a repeated key's last value wins (the streamed
 * key included: a later non-string value replaces a streamed string), keys
 * such as `__proto__` are own properties, numbers are `Number(text)` (1e999
 * is Infinity), and a lone surrogate escape ends up as U+FFFD in the bytes,
 * as `Buffer.from(JSON.parse(text).payload)` did.
 */
export class StreamedJson {
  /** The body so far while it is small; null once it is parsed as a stream. */
  private held: Buffer[] | null = [];
  private heldSize = 0;
  private tokenizer?: Parser;
  private readonly stack: Frame[] = [];
  private root: unknown;
  private inString = false;
  private pieces: string[] | undefined;
  private bytes: Utf8Collector | undefined;
  private streamed: Utf8Bytes | undefined;
  private readonly utf8 = new Utf8Chunks();
  private empty = true;
  private failure: Error | undefined;

  constructor(
    private readonly streamedKey?: string,
    /** Bodies up to this many bytes go to JSON.parse whole (0: every body is streamed). */
    private readonly wholeUpTo = SMALL_BODY,
  ) {}

  private get parser(): Parser {
    if (!this.tokenizer) {
      this.tokenizer = new Parser({
        packKeys: true,
        streamKeys: true, // startKey/endKey tell when the text is inside a key
        packStrings: false, // streamed only: the big string arrives as chunks
        packNumbers: true,
        streamNumbers: false,
        decodeStrings: false, // text in, as decoded here
        readableHighWaterMark: Number.MAX_SAFE_INTEGER, // tokens are read after each write: never hold a write back
      });
      this.tokenizer.on('error', () => undefined); // read from `errored` after each step
    }
    return this.tokenizer;
  }

  /**
   * Takes the next bytes. A body up to SMALL_BODY is held and parsed whole
   * at the end by JSON.parse itself (the usual submit: a tokenizer per
   * request cost several times its CPU and garbage); past that, it is
   * parsed as it comes.
   */
  write(bytes: Buffer): void {
    if (this.held) {
      this.held.push(bytes);
      this.heldSize += bytes.length;
      if (this.heldSize <= this.wholeUpTo) return;
      const held = this.held;
      this.held = null;
      for (const chunk of held) this.stream(chunk);
      return;
    }
    this.stream(bytes);
  }

  /**
   * Parses what `bytes` complete. After a syntax error the bytes are still
   * checked as UTF-8: a body that is not UTF-8 is told so, whatever else.
   */
  private stream(bytes: Buffer): void {
    const whole = this.utf8.next(bytes);
    if (!whole || this.failure || whole.length === 0) return;
    let text = whole.toString('utf8');
    if (this.empty && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.length === 0) return;
    this.empty = false;
    if (NOT_JSON_SPACE_LEADS.some((lead) => whole.includes(lead))) this.writeChecked(text);
    else this.step(text);
    // Nothing of this text outlives the call: pieces kept until later would be promoted by the GC, then collected in long pauses.
    this.bytes?.flush();
  }

  /** The value once all bytes are in; throws NotUtf8Error, or the syntax error. */
  async end(): Promise<ParsedJson> {
    if (this.held) return this.parseWhole(Buffer.concat(this.held));
    if (!this.utf8.end()) throw new NotUtf8Error('The body is not valid UTF-8');
    if (this.failure) throw this.failure;
    if (this.empty) return { value: {} };
    await new Promise<void>((resolve) => this.parser.end(() => resolve()));
    this.drain();
    const failure = this.failure ?? this.parser.errored;
    if (failure) throw failure;
    return { value: this.root, ...(this.streamed ? { streamed: this.streamed } : {}) };
  }

  /** The same answer for a small body, from JSON.parse. */
  private parseWhole(body: Buffer): ParsedJson {
    if (!isUtf8(body)) throw new NotUtf8Error('The body is not valid UTF-8');
    let text = body.toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.length === 0) return { value: {} };
    const value: unknown = JSON.parse(text);
    const key = this.streamedKey;
    if (!key || typeof value !== 'object' || value === null || Array.isArray(value)) return { value };
    const fields = value as Record<string, unknown>;
    const streamed = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (typeof streamed !== 'string') return { value };
    const bytes = Buffer.from(streamed, 'utf8');
    fields[key] = '';
    return { value, streamed: { chunks: [bytes], size: bytes.length } };
  }

  /** Writes `text` in pieces cut before each character of NOT_JSON_SPACE, refused when it falls outside a string. */
  private writeChecked(text: string): void {
    let from = 0;
    // Only the first such character of each string is checked: up to the string's closing quote it is text.
    let stringEnd = -1;
    for (const match of text.matchAll(NOT_JSON_SPACE)) {
      if (match.index < stringEnd) continue;
      this.step(text.slice(from, match.index));
      if (this.failure) return;
      if (!this.inString) {
        this.failure = new Error(`Unexpected character U+${match[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} outside a string`);
        return;
      }
      from = match.index;
      stringEnd = closingQuote(text, from);
    }
    this.step(from === 0 ? text : text.slice(from));
  }

  private step(text: string): void {
    if (text) this.parser.write(text);
    this.drain();
    if (this.parser.errored) this.failure = this.parser.errored;
  }

  private drain(): void {
    for (let token: Token | null = this.parser.read(); token !== null; token = this.parser.read()) this.take(token);
  }

  private take(token: Token): void {
    switch (token.name) {
      case 'startObject':
        this.stack.push({ container: {}, key: '' });
        break;
      case 'startArray':
        this.stack.push({ container: [], key: '' });
        break;
      case 'endObject':
      case 'endArray':
        this.value(this.stack.pop()?.container);
        break;
      case 'startKey':
        this.inString = true;
        break;
      case 'endKey':
        this.inString = false;
        break;
      case 'keyValue':
        this.key(String(token.value));
        break;
      case 'startString':
        this.startString();
        break;
      case 'stringChunk':
        // Chunks of keys come too: neither collector is open then.
        if (this.bytes) this.bytes.add(String(token.value));
        else this.pieces?.push(String(token.value));
        break;
      case 'endString':
        this.endString();
        break;
      case 'numberValue':
        this.value(Number(token.value));
        break;
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        this.value(token.value);
        break;
    }
  }

  private key(key: string): void {
    const top = this.stack[this.stack.length - 1];
    if (top) top.key = key;
    // The key again at the top: its last value wins, as with JSON.parse.
    if (this.stack.length === 1 && key === this.streamedKey) this.streamed = undefined;
  }

  private startString(): void {
    this.inString = true;
    const top = this.stack[this.stack.length - 1];
    const streamed = this.stack.length === 1 && top !== undefined && !Array.isArray(top.container) && top.key === this.streamedKey;
    if (streamed) this.bytes = new Utf8Collector();
    else this.pieces = [];
  }

  private endString(): void {
    this.inString = false;
    if (this.bytes) {
      this.streamed = this.bytes.finish();
      this.bytes = undefined;
      this.value('');
      return;
    }
    const text = this.pieces?.join('') ?? '';
    this.pieces = undefined;
    this.value(text);
  }

  private value(value: unknown): void {
    const top = this.stack[this.stack.length - 1];
    if (!top) {
      this.root = value;
      return;
    }
    if (Array.isArray(top.container)) top.container.push(value);
    // As JSON.parse: an own property even for `__proto__`; a repeated key keeps its place, takes the new value.
    else Object.defineProperty(top.container, top.key, { value, writable: true, enumerable: true, configurable: true });
  }
}

/**
 * Where the string that `from` is inside ends: its first quote not escaped
 * by a backslash, or the text's end. Linear: each backslash is counted once.
 */
function closingQuote(text: string, from: number): number {
  for (let quote = text.indexOf('"', from); quote !== -1; quote = text.indexOf('"', quote + 1)) {
    let slashes = 0;
    while (quote - slashes - 1 >= from && text.charCodeAt(quote - slashes - 1) === 0x5c) slashes++;
    if (slashes % 2 === 0) return quote;
  }
  return text.length;
}

/** Turns string chunks into UTF-8 Buffers; a surrogate pair split between chunks stays whole. */
class Utf8Collector {
  private readonly chunks: Buffer[] = [];
  private pending: string[] = [];
  private pendingUnits = 0;
  private size = 0;

  add(text: string): void {
    this.pending.push(text);
    this.pendingUnits += text.length;
    if (this.pendingUnits >= FLUSH_UNITS) this.flush();
  }

  finish(): Utf8Bytes {
    this.flush(true);
    return { chunks: this.chunks, size: this.size };
  }

  /** Turns what is pending into a Buffer, but for a last high surrogate, which waits for its pair unless `last`. */
  flush(last = false): void {
    if (this.pendingUnits === 0) return;
    let text = this.pending.join('');
    this.pending = [];
    this.pendingUnits = 0;
    const end = text.charCodeAt(text.length - 1);
    // A high surrogate waits for its pair: encoded alone it would become U+FFFD.
    if (!last && end >= 0xd800 && end <= 0xdbff) {
      this.pending.push(text.slice(-1));
      this.pendingUnits = 1;
      text = text.slice(0, -1);
    }
    if (text.length === 0) return;
    const bytes = Buffer.from(text, 'utf8');
    this.chunks.push(bytes);
    this.size += bytes.length;
  }
}
