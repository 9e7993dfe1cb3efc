import type { ImageRecord } from '../domain/image-record.js';
/**
 * ListImages answers kubelet's image GC and node status; with 10,000 images the protobuf encoding
 * of ~3 MiB, not the lookup, dominated its latency. Records are immutable, so each record's encoded
 * `Image` is cached, and a repeated field is just the concatenation of its encoded elements: the
 * response is built by concatenating cached pieces (and reused whole while the list is unchanged).
 */

export class ImageListEncoder {
  readonly #pieces = new WeakMap<ImageRecord, Buffer>();
  readonly #lists = new WeakMap<readonly ImageRecord[], Buffer>();
  readonly #encodeOne: (record: ImageRecord) => Buffer;

  /** `encodeOne` must return a ListImagesResponse holding exactly that one image. */
  constructor(encodeOne: (record: ImageRecord) => Buffer) {
    this.#encodeOne = encodeOne;
  }

  encode(records: readonly ImageRecord[]): Buffer {
    const cached = this.#lists.get(records);
    if (cached !== undefined) return cached;
    const pieces = records.map((record) => {
      let piece = this.#pieces.get(record);
      if (piece === undefined) {
        piece = this.#encodeOne(record);
        this.#pieces.set(record, piece);
      }
      return piece;
    });
    const encoded = Buffer.concat(pieces);
    if (Object.isFrozen(records)) this.#lists.set(records, encoded);
    return encoded;
  }
}
