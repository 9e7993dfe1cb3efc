/**
 * The data that flows between the signature fetchers (which report), the verifiers (which check
 * each signature) and the pure policy core (which decides). Nothing here does I/O.
 */
import type { Digest } from './digest.js';

/** Where one signature came from: lookaside `signature-<index>` or the index-th sigstore attachment layer. */
export interface SignatureLocation {
  readonly source: 'lookaside' | 'sigstore-attachment';
  /** 1-based, as in `signature-1`. */
  readonly index: number;
  /** The URL (credentials removed) or, for file://, the path. */
  readonly url: string;
}

/** Bytes that parsed as a signature format. Untrusted until a verifier accepts them. */
export interface UntrustedSignatureBlob {
  readonly location: SignatureLocation;
  readonly format: 'simple-signing' | 'sigstore';
  readonly bytes: Uint8Array;
  /** sigstore only: layer media type and annotations. */
  readonly untrustedMimeType?: string;
  readonly untrustedAnnotations?: Readonly<Record<string, string>>;
}

export type TroubleKind =
  | 'http-status' // a status other than 200 and 404 after retries
  | 'transport' // reset, refused, TLS, DNS
  | 'timeout' // per-request timeout
  | 'budget' // the signature-phase budget ran out before this index was read
  | 'too-large' // over the 4 MiB cap
  | 'empty' // 200 with an empty body
  | 'unrecognized-format' // first byte is no signature format
  | 'redirects' // more than 10 redirects
  | 'unsupported-scheme'
  | 'io'; // file:// read error other than ENOENT

/** A signature index that could not be read. Reported, never thrown. */
export interface SignatureTrouble {
  readonly location: SignatureLocation;
  readonly kind: TroubleKind;
  /** Upstream-compatible text, e.g. `parsing signature <URL>: unrecognized signature format, starting with binary 0x3c`. */
  readonly message: string;
  /**
   * The message without the location's URL, e.g. `unrecognized signature format, starting with
   * binary 0x3c`: texts that name the location themselves show this, so the URL appears once.
   */
  readonly detail?: string;
  readonly httpStatus?: number;
  readonly contentType?: string;
  readonly firstByte?: number;
  /** transport only: the system or undici error code, e.g. `ECONNREFUSED`. */
  readonly errorCode?: string;
  readonly bytesRead?: number;
  /** Requests made for this index (1 = no retry). */
  readonly attempts: number;
  /**
   * Set on the last of the troubles in a row that made the source stop reading: how many there
   * were. The indices after the first of them may not exist at all (a server that is down fails
   * every request the same way).
   */
  readonly stoppedReadAfter?: number;
}

/** Everything one signature source read for one manifest digest. */
export interface SignatureFetchReport {
  /** In index order. */
  readonly signatures: readonly UntrustedSignatureBlob[];
  /** In index order. */
  readonly troubles: readonly SignatureTrouble[];
  /** Why probing stopped. */
  readonly end: 'not-found' | 'consecutive-troubles' | 'cap' | 'budget' | 'not-configured';
  /** Notes that are not troubles, e.g. a signature served as text/html that still parsed. */
  readonly notices: readonly string[];
  /** Requests that were retried and then succeeded or 404ed. */
  readonly retriedIndices: readonly number[];
}

export interface SignerIdentity {
  /** Uppercase hex fingerprint of the key that made the signature (may be a subkey). */
  readonly keyFingerprint: string;
  /** Uppercase hex fingerprint of its primary key: what trust is decided on. */
  readonly primaryKeyFingerprint: string;
}

export type RejectionKind =
  | 'untrusted-key' // signed by a key not in the requirement's keys
  | 'invalid-signature' // cryptographic verification failed, not a signed message, several signatures
  | 'expired'
  | 'invalid-payload' // strict JSON / type / missing keys
  | 'digest-mismatch'
  | 'identity-mismatch'
  | 'unsupported'; // e.g. a format the requirement does not handle

/** One requirement's judgement of one signature (c/image's tri-state minus `unknown`). */
export type SignatureCheck =
  | {
      readonly verdict: 'accepted';
      readonly location: SignatureLocation;
      readonly signer: SignerIdentity;
      readonly signedDockerReference: string;
      readonly signedManifestDigest: Digest;
      readonly creator?: string;
      readonly timestamp?: number;
    }
  | {
      readonly verdict: 'rejected';
      readonly location: SignatureLocation;
      readonly kind: RejectionKind;
      /** Upstream-compatible reason, e.g. `Signature for digest sha256:… does not match`. */
      readonly reason: string;
      readonly signer?: SignerIdentity;
    };

export type AcceptedCheck = Extract<SignatureCheck, { verdict: 'accepted' }>;
export type RejectedCheck = Extract<SignatureCheck, { verdict: 'rejected' }>;

/**
 * Stable warning codes. Retired codes MUST NOT be reused.
 * PGW001 a signature could not be read but the policy was satisfied by others
 * PGW002 a signature was read but rejected, and the policy was satisfied by others
 * PGW003 a signature request needed retries
 * PGW004 a signature was served with an unexpected Content-Type but parsed
 */
export type WarningCode = 'PGW001' | 'PGW002' | 'PGW003' | 'PGW004';

export interface Warning {
  readonly code: WarningCode;
  readonly message: string;
  readonly location?: SignatureLocation;
}

/** The outcome of one policy requirement. */
export interface RequirementOutcome {
  /** e.g. `signedBy` / `insecureAcceptAnything`. */
  readonly type: string;
  /** Human summary: `signedBy GPGKeys (2 keys, matchRepoDigestOrExact)`. */
  readonly description: string;
  readonly satisfied: boolean;
  /** The accepted signature that satisfied a signature requirement. */
  readonly satisfiedBy?: AcceptedCheck;
  /** Upstream-compatible reason when not satisfied. */
  readonly reason?: string;
  readonly rejections: readonly RejectedCheck[];
}

/** Which policy file and scope produced the requirements. */
export interface PolicyScope {
  /** The file the policy came from, or `<embedded>`. */
  readonly policyFile: string;
  /** `docker` transport scope string that matched, or `default`. */
  readonly scope: string;
}

export interface Verdict {
  readonly allowed: boolean;
  readonly scope: PolicyScope;
  readonly requirements: readonly RequirementOutcome[];
  /** Every signature that could not be read, from every source. */
  readonly troubles: readonly SignatureTrouble[];
  /** Only on allowed verdicts: what the operator should know. */
  readonly warnings: readonly Warning[];
  /**
   * Only on denied verdicts: upstream wording for the first clause, then the troubles, e.g.
   * `None of the signatures were accepted, reasons: a; b; additionally 1 signature could not be read: …`.
   */
  readonly denial?: string;
}
