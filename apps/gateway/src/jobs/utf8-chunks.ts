import { isUtf8 } from 'node:buffer';

/**
 * Checks UTF-8 that arrives in chunks, with the rule body-parser's check
 * used on whole bodies (`isUtf8`: no overlong forms, no surrogates, nothing
 * past U+10FFFF): each chunk is cut after its last whole character, and the
 * bytes of a character split between chunks wait for the rest.
 */
export class Utf8Chunks {
  private carry: Buffer | undefined;
  private broken = false;

  /** The whole characters so far (what was carried first); undefined once the bytes are not UTF-8. */
  next(chunk: Buffer): Buffer | undefined {
    if (this.broken) return undefined;
    const bytes = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    const cut = wholeLength(bytes);
    this.carry = cut < bytes.length ? Buffer.from(bytes.subarray(cut)) : undefined;
    const whole = bytes.subarray(0, cut);
    if (!isUtf8(whole)) {
      this.broken = true;
      return undefined;
    }
    return whole;
  }

  /** True when every byte was valid UTF-8 and the last character was whole. */
  end(): boolean {
    if (this.carry) this.broken = true;
    return !this.broken;
  }
}

/**
 * The length of `bytes` without a last character that runs past its end.
 * Only the last three bytes are looked at: a longer run of continuation
 * bytes is either a whole 4-byte character or invalid, for isUtf8 to tell.
 */
function wholeLength(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: its lead is further back
    const size = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return size > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}
