/**
 * An in-memory BlobWriter for registry tests (until/alongside the real store's writer):
 *
 *   const writer = new MemoryBlobWriter(descriptor);            // expects descriptor.digest + size
 *   await source.fetchBlob(image, descriptor, writer, {});
 *   writer.committed / writer.bytes() / writer.writes (chunk sizes) / writer.aborted
 *
 * commit() verifies size then sha256 and throws PullguardError SIZE_MISMATCH / DIGEST_MISMATCH,
 * dropping the buffered bytes (as the real store removes its temp file). Writing past the expected
 * size fails early with SIZE_MISMATCH, like a store with a size cap.
 */
import { createHash } from 'node:crypto';
import type { Descriptor } from '../../src/domain/image.js';
import { PullguardError } from '../../src/domain/errors.js';
import type { BlobWriter } from '../../src/pull/ports.js';

export class MemoryBlobWriter implements BlobWriter {
  private chunks: Buffer[] = [];
  private written = 0;
  committed = false;
  aborted = false;
  /** Sizes of each write() call, to see that a body was streamed rather than buffered. */
  readonly writes: number[] = [];

  constructor(private readonly expected: Pick<Descriptor, 'digest' | 'size'>) {}

  get offset(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.committed || this.aborted) throw new PullguardError('INTERNAL', 'write after commit/abort');
    if (this.written + chunk.length > this.expected.size) {
      this.drop();
      throw new PullguardError('SIZE_MISMATCH', `blob ${this.expected.digest}: more than the expected ${this.expected.size} bytes`, {
        facts: { digest: this.expected.digest, expectedSize: this.expected.size },
      });
    }
    this.chunks.push(Buffer.from(chunk));
    this.written += chunk.length;
    this.writes.push(chunk.length);
  }

  async commit(): Promise<void> {
    if (this.committed) return;
    if (this.aborted) throw new PullguardError('INTERNAL', 'commit after abort');
    if (this.written !== this.expected.size) {
      const got = this.written;
      this.drop();
      throw new PullguardError('SIZE_MISMATCH', `blob ${this.expected.digest}: expected ${this.expected.size} bytes, got ${got}`, {
        facts: { digest: this.expected.digest, expectedSize: this.expected.size, actualSize: got },
      });
    }
    const actual = `sha256:${createHash('sha256').update(Buffer.concat(this.chunks)).digest('hex')}`;
    if (actual !== this.expected.digest) {
      this.drop();
      throw new PullguardError('DIGEST_MISMATCH', `blob ${this.expected.digest}: content has digest ${actual}`, {
        facts: { digest: this.expected.digest, actualDigest: actual },
      });
    }
    this.committed = true;
  }

  async abort(): Promise<void> {
    if (this.committed) return;
    this.drop();
  }

  /** The committed bytes (empty unless committed). */
  bytes(): Buffer {
    return this.committed ? Buffer.concat(this.chunks) : Buffer.alloc(0);
  }

  private drop(): void {
    this.chunks = [];
    this.written = 0;
    this.aborted = true;
  }
}
