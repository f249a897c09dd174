import { connect } from 'node:net';

// fetch (WHATWG URL) folds `..`, `%2e%2e` and backslashes before a request
// leaves, so the fuzz tests write their requests byte by byte on a socket.

export interface RawRequest {
  method: string;
  /** The request target exactly as sent (not normalised, not encoded). */
  path: string;
  /** Header lines as sent, in order; `Host` and `Connection: close` are added. */
  headers?: Array<[string, string]>;
  body?: Buffer | string;
  /** Adds `Content-Length` with the body's true size unless the headers set their own. */
  autoLength?: boolean;
  /**
   * Half-closes the socket after the body, like a client that gave up. Node's
   * server then drops requests still in progress without an answer, so it is
   * only for bodies shorter than they declare.
   */
  halfClose?: boolean;
}

export interface RawAnswer {
  /** null: the server closed without an answer (or did not answer in time). */
  status: number | null;
  headers: Record<string, string>;
  /** The body, de-chunked; every byte that came back when the head could not be read. */
  body: Buffer;
  /** Everything that came back: the secrets check scans it all, headers too. */
  raw: Buffer;
}

const ANSWER_TIMEOUT_MS = 10_000;

export function send(base: string, request: RawRequest): Promise<RawAnswer> {
  const { hostname, port } = new URL(base);
  const body = typeof request.body === 'string' ? Buffer.from(request.body) : (request.body ?? Buffer.alloc(0));
  const headers = [...(request.headers ?? [])];
  const has = (name: string) => headers.some(([key]) => key.toLowerCase() === name);
  if (request.autoLength !== false && !has('content-length') && !has('transfer-encoding') && (body.length > 0 || request.method !== 'GET')) {
    headers.push(['Content-Length', String(body.length)]);
  }
  const head = [`${request.method} ${request.path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close', ...headers.map(([k, v]) => `${k}: ${v}`)];
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(parseAnswer(Buffer.concat(chunks)));
    };
    const timer = setTimeout(done, ANSWER_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', done);
    socket.on('error', () => undefined); // a reset after the answer: what came is kept
    const bytes = Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
    if (request.halfClose) socket.end(bytes);
    else socket.write(bytes);
  });
}

function parseAnswer(raw: Buffer): RawAnswer {
  const end = raw.indexOf('\r\n\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(raw.subarray(0, 16).toString('latin1'));
  if (end < 0 || !match) return { status: null, headers: {}, body: raw, raw };
  const headers: Record<string, string> = {};
  for (const line of raw.subarray(0, end).toString('latin1').split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if (headers['transfer-encoding']?.includes('chunked')) body = dechunk(body);
  return { status: Number(match[1]), headers, body, raw };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** How a generated string is written into a URL path. */
export type Encoding = 'minimal' | 'component' | 'every-byte';

/**
 * `minimal` escapes only what cannot stand in a request line (controls,
 * space, non-ASCII, `?`, `#`) and leaves `%`, `/` and `\` as they are, so
 * `%2e%2e` and `../` reach the server literally; `component` is
 * encodeURIComponent; `every-byte` escapes each UTF-8 byte, letters and dots too.
 */
export function onWire(given: string, encoding: Encoding): string {
  const text = given.replace(/\p{Surrogate}/gu, '\uFFFD'); // a lone surrogate has no UTF-8 bytes
  if (encoding === 'component') return encodeURIComponent(text).replace(/%(?![0-9A-F]{2})/g, '%25');
  const bytes = Buffer.from(text, 'utf8');
  let out = '';
  for (const byte of bytes) {
    const keep = encoding === 'minimal' && byte > 0x20 && byte < 0x7f && byte !== 0x3f && byte !== 0x23;
    out += keep ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** What Express hands the handler for one `:param` segment, or null when it cannot be decoded. */
export function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}
