/**
 * The log of pulls, as JSON lines: the verdict at info, each warning of a successful pull at warn
 * (under the caller's fields, so it joins the RPC's own lines), progress at debug. Also the lines
 * for what the registry client and the lookaside source report while a pull runs.
 */
import type { BlobStored, PullDecided, PullEnded, PullObserver, PullResolved, StructuredLog } from './ports.js';

export class PullLog implements PullObserver {
  readonly #log: StructuredLog;

  constructor(log: StructuredLog) {
    this.#log = log;
  }

  resolved(event: PullResolved): void {
    this.#log.debug({ pull: { type: 'resolved', ...event } }, 'pull resolved');
  }

  decided({ image, verdict }: PullDecided): void {
    this.#log.info(
      { image, allowed: verdict.allowed, policyFile: verdict.scope.policyFile, scope: verdict.scope.scope, troubles: verdict.troubles.length },
      'signature verdict',
    );
  }

  blobStored(event: BlobStored): void {
    this.#log.debug({ pull: { type: 'blob-done', ...event } }, 'pull blob-done');
  }

  pullEnded(ended: PullEnded): void {
    if (ended.warnings.length === 0) return;
    // The caller's fields usually name the image already (bounded): one `image` key per line.
    const log = this.#log.child({ image: ended.image, ...ended.logFields });
    for (const warning of ended.warnings) {
      log.warn(
        { manifestDigest: ended.manifestDigest, warningCode: warning.code, signatureIndex: warning.location?.index, url: warning.location?.url },
        warning.message,
      );
    }
  }
}

/** A registry client `onEvent` listener: redirects, retries, resumes and failed sources, at info. */
export function logRegistryEvents(log: StructuredLog): (event: { readonly type: string }) => void {
  return (event) => log.info({ registry: event }, `registry ${event.type}`);
}

/** A lookaside source `onEvent` listener: retries at info, every request and outcome at debug. */
export function logLookasideEvents(log: StructuredLog): (event: { readonly type: string }) => void {
  return (event) => {
    if (event.type === 'retry') log.info({ lookaside: event }, 'retrying signature request');
    else log.debug({ lookaside: event }, 'lookaside');
  };
}
