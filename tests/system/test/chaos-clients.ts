import { setTimeout as sleep } from 'node:timers/promises';

/**
 * HTTP clients as a careful user writes them: a 503, a 5xx or a dropped
 * connection is retried with a short backoff, within a bound.
 */

export interface Answer {
  status: number;
  body: string;
}

/** One request; a network error or a timeout comes back as its description, not a throw. */
export async function request(url: string, init: RequestInit = {}, timeoutMs = 15_000): Promise<Answer | string> {
  try {
    const answer = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    return { status: answer.status, body: await answer.text() };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return `${(error as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`;
  }
}

export type SubmitOutcome =
  | { kind: 'accepted'; tries: number }
  | { kind: 'never-accepted'; tries: number; last: string }
  | { kind: 'rejected'; tries: number; last: string };

const retryable = (answer: Answer | string) => typeof answer === 'string' || answer.status >= 500;
const describe = (answer: Answer | string) => (typeof answer === 'string' ? answer : `${answer.status} ${answer.body}`);

/**
 * POST /start-job until the gateway answers for sure. 200 is accepted; so is
 * 409 after a try whose outcome we could not know (it may have gone through).
 */
export async function submit(url: string, body: Record<string, unknown>, giveUpMs = 60_000, halt?: AbortSignal): Promise<SubmitOutcome> {
  const deadline = Date.now() + giveUpMs;
  let uncertain = false;
  for (let tries = 1; ; tries++) {
    const answer = await request(`${url}/start-job`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (typeof answer !== 'string' && answer.status === 200) return { kind: 'accepted', tries };
    if (typeof answer !== 'string' && answer.status === 409 && uncertain) return { kind: 'accepted', tries };
    if (!retryable(answer)) return { kind: 'rejected', tries, last: describe(answer) };
    uncertain = true;
    const backoff = Math.min(1000, 50 * 2 ** tries) * (0.5 + Math.random() / 2);
    if (Date.now() + backoff > deadline || halt?.aborted) return { kind: 'never-accepted', tries, last: describe(answer) };
    await sleep(backoff);
  }
}

/** GET a JSON answer, retrying 5xx and network errors until `deadline`; undefined when it never came. */
export async function getJson(url: string, deadline: number, halt?: AbortSignal): Promise<{ status: number; json: unknown } | undefined> {
  for (;;) {
    const answer = await request(url);
    if (!retryable(answer) && typeof answer !== 'string') {
      try {
        return { status: answer.status, json: JSON.parse(answer.body) as unknown };
      } catch {
        return { status: answer.status, json: answer.body };
      }
    }
    if (Date.now() > deadline || halt?.aborted) return undefined;
    await sleep(200);
  }
}

/** Runs `fn` over `items`, `concurrency` at a time. */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<void>,
  halt?: AbortSignal,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length && !halt?.aborted) {
      const index = next++;
      await fn(items[index] as T, index);
    }
  });
  await Promise.all(lanes);
}

/** mulberry32: a small seeded generator, so a failing schedule can be replayed with its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
