/**
 * Overall bounds on one registry read, retries included. The per-request idle timeout alone lets a
 * registry that sends a byte every few seconds hold a pull for as long as it likes (and kubelet sets
 * no deadline on PullImage), so every read also gets a deadline:
 *
 * - manifests, tokens and pings: a fixed time (`readMs`) from the first request to the last byte;
 * - blobs: the same time as a start-up allowance, plus time earned by the bytes received at the
 *   minimum rate. The read fails once `elapsed > readMs + received / rate`: a drip or a stall fails
 *   shortly after `readMs` whatever size the manifest declares, and a blob that keeps the rate on
 *   average is never cut, so the whole read is bounded by `readMs + size / rate`.
 */

export interface ReadDeadlineOptions {
  /** Time allowed with no bytes at all. */
  readonly allowanceMs: number;
  /** Bytes per second that extend the deadline; absent: a fixed deadline. */
  readonly minBytesPerSecond?: number;
  /** The caller's cancellation: forwarded, and never mistaken for the deadline. */
  readonly parent?: AbortSignal;
  /** Monotonic milliseconds (tests). */
  readonly now?: () => number;
}

export class ReadDeadline {
  private readonly controller = new AbortController();
  private readonly started: number;
  private readonly now: () => number;
  private received = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly forward: (() => void) | undefined;
  /** Set when the deadline (not the caller) ended the read. */
  expired = false;

  constructor(private readonly options: ReadDeadlineOptions) {
    this.now = options.now ?? (() => performance.now());
    this.started = this.now();
    const parent = options.parent;
    if (parent !== undefined) {
      if (parent.aborted) this.controller.abort(parent.reason);
      else {
        this.forward = () => this.controller.abort(parent.reason);
        parent.addEventListener('abort', this.forward, { once: true });
      }
    }
    if (!this.controller.signal.aborted) this.check();
  }

  /** Aborts when the caller cancels or the deadline passes. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Counts bytes toward the rate (blobs). */
  progress(bytes: number): void {
    this.received += bytes;
  }

  get receivedBytes(): number {
    return this.received;
  }

  elapsedMs(): number {
    return this.now() - this.started;
  }

  /** Time left before the deadline at the current byte count (never negative). */
  remainingMs(): number {
    return Math.max(0, this.limit() - this.now());
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.forward !== undefined) this.options.parent?.removeEventListener('abort', this.forward);
  }

  private limit(): number {
    const rate = this.options.minBytesPerSecond;
    return this.started + this.options.allowanceMs + (rate === undefined || rate <= 0 ? 0 : (this.received * 1000) / rate);
  }

  /** Re-armed lazily: bytes received meanwhile move the deadline without a timer per chunk. */
  private check(): void {
    this.timer = undefined;
    if (this.controller.signal.aborted) return;
    const wait = this.limit() - this.now();
    if (wait <= 0) {
      this.expired = true;
      this.controller.abort();
      return;
    }
    this.timer = setTimeout(() => this.check(), Math.ceil(wait));
  }
}
