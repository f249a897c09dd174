/** One Server-Sent Event as it came off the wire. */
export interface SseMessage {
  /** The `id:` field, or the last one seen on the stream (the spec's "last event ID"). */
  id: string | null;
  /** The `event:` field; `message` when absent. */
  event: string;
  data: string;
}

/**
 * Parses a `text/event-stream` body (the WHATWG rules: `field: value`
 * lines, blank line dispatches, `:` comments ignored, CR/LF/CRLF line
 * ends, multi-line `data`). Written here rather than using EventSource so
 * requests can carry the bearer token and run in Node and browsers alike.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const abort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener('abort', abort, { once: true });
  let buffer = '';
  let lastId: string | null = null;
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // Lines end in \n, \r\n or \r; a trailing \r may still become \r\n, so it waits for more.
      let match: RegExpExecArray | null;
      const lineEnd = /\r\n|\n|\r(?!$)/g;
      let start = 0;
      while ((match = lineEnd.exec(buffer))) {
        const line = buffer.slice(start, match.index);
        start = match.index + match[0].length;
        if (line === '') {
          if (data.length > 0) yield { id: lastId, event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) lastId = value;
      }
      buffer = buffer.slice(start);
      // An event without its closing blank line is dropped, as the spec says.
      if (done) return;
    }
  } finally {
    signal?.removeEventListener('abort', abort);
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
