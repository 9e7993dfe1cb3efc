/**
 * The HTTP policies every outbound read shares — registry (src/registry) and lookaside
 * (src/sources) alike: which redirects are followed and what crosses them, how long to wait before
 * a retry (jittered exponential back-off, or what Retry-After says), and how a body is read under a
 * byte cap. Callers keep their own loops (a registry answer is an exception, a lookaside answer is
 * data for the policy to weigh), but decide with these.
 */

export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

export type RedirectDecision =
  /** Follow to `url`; `sameOrigin` false: the request's credentials must not go along. */
  | { readonly follow: true; readonly url: URL; readonly sameOrigin: boolean }
  /** Never followed: another scheme than http(s) (file://, …), or https down to plain http. */
  | { readonly follow: false; readonly url: URL; readonly why: 'scheme' | 'downgrade'; readonly message: string };

/** Where a redirect from `from` to `location` may lead. */
export function redirectTarget(from: URL, location: string): RedirectDecision {
  const url = new URL(location, from);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { follow: false, url, why: 'scheme', message: `redirect from ${from.host} to an unsupported scheme ${url.protocol}` };
  }
  if (from.protocol === 'https:' && url.protocol === 'http:') {
    return { follow: false, url, why: 'downgrade', message: `redirect from https://${from.host} down to plain http://${url.host}` };
  }
  return { follow: true, url, sameOrigin: url.origin === from.origin };
}

/**
 * The wait before retry number `attempt` (1 for the first): base × 2^(attempt−1), at most `maxMs`,
 * times a jitter factor in [0.5, 1.5) from `random` ∈ [0, 1) — 0.5 gives exactly the exponential step.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  return Math.round(Math.min(maxMs, baseMs * 2 ** (attempt - 1)) * (0.5 + random()));
}

/** Retry-After as delta-seconds or an HTTP date, in milliseconds from `nowMs`; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

export type CappedBody = { readonly ok: true; readonly bytes: Uint8Array } | { readonly ok: false; readonly bytesRead: number };

/**
 * Reads a whole body of at most `cap` bytes; past it (or a declared Content-Length past it) the
 * body is destroyed and the answer says how much was read.
 */
export async function readBodyCapped(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  declaredLength: number | undefined,
  cap: number,
  onBytes?: (n: number) => void,
): Promise<CappedBody> {
  if (declaredLength !== undefined && Number.isFinite(declaredLength) && declaredLength > cap) {
    body.destroy();
    return { ok: false, bytesRead: 0 };
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    onBytes?.(chunk.length);
    if (total > cap) {
      body.destroy();
      return { ok: false, bytesRead: total };
    }
    chunks.push(chunk);
  }
  return { ok: true, bytes: new Uint8Array(Buffer.concat(chunks)) };
}
