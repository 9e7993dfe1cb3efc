/**
 * The anchor: the real CRI-O (v1.36.3, built by .ci/build-peers) alone, as a node runs it with
 * lookaside signatures — a `signedBy` GPGKeys policy for the test registry's scope in its policy.json
 * and a registries.d lookaside at the fault-injecting lookaside server — pulling an image signed with
 * real gpg/skopeo (signature-1 by the trusted key, signature-2 by another) while signature-2 is
 * broken in each of the ways the suite knows. Then the same cases, same run, through the real
 * `pullguard serve --backend <CRI-O's socket>` (runtime fetch; CRI-O configured from deploy/crio/).
 *
 * For each case: the outcome, the gRPC code and message (what kubelet turns into
 * `Failed to pull image "…": <message>`), the elapsed time (recorded, never asserted) and how often
 * signature-2 was requested. The table is printed and written as markdown to
 * $PULLGUARD_ANCHOR_TABLE (default <tmpdir>/pullguard-crio-anchor-table.md) for the README.
 */
import { GRPC_CODE_NAMES } from '../../../src/metrics/pullguard-metrics.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crioUnavailableReason, startCrio, type RunningCrio } from '../../helpers/crio.js';
import { startLookasideServer, type LookasideFault, type LookasideServer } from '../../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { PEERS } from '../../helpers/peers.js';
import { startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../../helpers/signed-images.js';
import { writeSigningConfig } from '../../helpers/signing-config.js';
import { deployedCrioConfig } from './deploy-config.js';

const notRoot = process.getuid?.() !== 0;
const unavailable = crioUnavailableReason();
/** A server that accepts the request and answers nothing for this long, then serves signature-2. */
const STALL_MS = 15_000;
/** containers/image's signature size limit (internal/iolimits.MaxSignatureBodySize, 4 MiB), plus 1 MiB. */
const OVERSIZED_BYTES = 5 * 1024 * 1024;
const PULL_DEADLINE_MS = 120_000;
/** CRI-O built with containers_image_openpgp verifies no EdDSA key (`public key type: 22`). */
const RSA = { algorithm: 'rsa3072' } as const;

interface AnchorCase {
  readonly key: string;
  /** What signature-2 is, for the table. */
  readonly signature2: string;
  /** undefined: signature-2 served as stored; null: no signature-2 (404: end of signatures). */
  readonly fault: LookasideFault | undefined | null;
}

const CASES: readonly AnchorCase[] = [
  { key: 'seed', signature2: 'an HTML page (200 text/html, a CDN error page)', fault: { html: true } },
  { key: '403', signature2: 'HTTP 403', fault: { status: 403 } },
  { key: '503', signature2: 'HTTP 503', fault: { status: 503 } },
  { key: 'reset', signature2: 'connection reset mid-body', fault: { reset: true } },
  { key: 'stall', signature2: `no answer for ${STALL_MS / 1000} s, then the stored signature`, fault: { stallMs: STALL_MS } },
  { key: 'empty', signature2: '200 with an empty body', fault: { empty: true } },
  { key: 'oversized', signature2: `200 with ${OVERSIZED_BYTES / 1024 / 1024} MiB (limit 4 MiB)`, fault: { bytes: OVERSIZED_BYTES } },
  { key: 'control', signature2: 'none (only signature-1, valid)', fault: null },
];

interface Outcome {
  readonly pulled: boolean;
  readonly imageRef?: string;
  readonly code?: number;
  readonly codeName?: string;
  readonly message?: string;
  readonly warnings: string[];
  readonly ms: number;
  readonly signature2Requests: number;
}

const results = { crio: new Map<string, Outcome>(), pullguard: new Map<string, Outcome>() };

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let trusted: GpgSigner;
let other: GpgSigner;
let image: BuiltImage;
let signed: SignedPush; // signature-1 by `trusted`, signature-2 by `other`

async function prepare(c: AnchorCase): Promise<void> {
  await lookaside.reset();
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
  if (c.fault === null) return;
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 2, signed.signatures[1]!);
  if (c.fault !== undefined) lookaside.fault(2, c.fault);
}

async function pullWith(client: RunningCrio['cri'], imageName: string): Promise<Outcome> {
  const warnings: string[] = [];
  const started = Date.now();
  const done = (fields: Partial<Outcome>): Outcome => ({
    pulled: false,
    warnings,
    ms: Date.now() - started,
    signature2Requests: lookaside.requestsFor(2).length,
    ...fields,
  });
  try {
    const response = await client.call<{ image_ref: string }>(
      'PullImage',
      { image: { image: imageName } },
      {
        deadlineMs: PULL_DEADLINE_MS,
        onTrailers: (md) => warnings.push(...md.get('pullguard-warnings').map(String)),
      },
    );
    return done({ pulled: true, imageRef: response.image_ref });
  } catch (err) {
    const e = err as grpc.ServiceError;
    return done({ code: e.code, codeName: GRPC_CODE_NAMES[e.code] ?? String(e.code), message: e.details });
  }
}

/** Ports, digests and temp paths out of a message, so the table reads the same on every run. */
function normalize(text: string): string {
  return text
    .replaceAll(registry.host, '<registry>')
    .replaceAll(lookaside.url, '<lookaside>')
    .replace(/([0-9a-f]{12})[0-9a-f]{52}/g, '$1…')
    .replace(/\/tmp\/pullguard-[^ /"]+/g, '<tmp>');
}

function cell(o: Outcome | undefined): string {
  if (o === undefined) return 'not run';
  const text = o.pulled
    ? `**pulled**${o.warnings.length > 0 ? `; warnings: ${o.warnings.map((w) => `\`${normalize(w)}\``).join('; ')}` : ''}`
    : `**fails** ${o.codeName} (${o.code}): \`${normalize(o.message ?? '')}\``;
  return `${text.replaceAll('|', '\\|')} — ${o.ms < 1000 ? `${o.ms} ms` : `${(o.ms / 1000).toFixed(1)} s`}, signature-2 requested ${o.signature2Requests}×`;
}

function table(): string {
  const lines = [
    `| case | signature-2 | CRI-O ${PEERS.crio} alone (signedBy + lookaside) | pullguard in front of CRI-O ${PEERS.crio} (--runtime-fetch runtime, deploy/crio/) |`,
    '|---|---|---|---|',
    ...CASES.map((c) => `| ${c.key} | ${c.signature2} | ${cell(results.crio.get(c.key))} | ${cell(results.pullguard.get(c.key))} |`),
    '',
    'Every case: signature-1 is a valid skopeo/gpg signature by the trusted key. Messages are the gRPC status message (kubelet shows `Failed to pull image "…": <message>`; reason `ErrImagePull` unless it starts with `SignatureValidationFailed`/`RegistryUnavailable`), with ports, long hex digests and temp paths shortened. Times are one run on this machine.',
    '',
    '<details><summary>exact messages</summary>',
    '',
    ...(['crio', 'pullguard'] as const).flatMap((side) =>
      CASES.map((c) => {
        const o = results[side].get(c.key);
        return `- ${side} / ${c.key}: ${o === undefined ? 'not run' : o.pulled ? `pulled ${o.imageRef}${o.warnings.length ? ` warnings ${JSON.stringify(o.warnings)}` : ''}` : `code ${o.code}: ${JSON.stringify(o.message)}`}`;
      }),
    ),
    '',
    '</details>',
    '',
  ];
  return lines.join('\n');
}

describe.skipIf(notRoot)(notRoot ? `CRI-O anchor (skipped: ${unavailable})` : 'CRI-O anchor: lookaside faults at signature-2', () => {
  beforeAll(async () => {
    if (unavailable !== undefined) throw new Error(`CRI-O cannot run: ${unavailable}`);
    work = await mkdtemp(join(tmpdir(), 'pullguard-crio-anchor-'));
    [registry, lookaside, trusted, other] = await Promise.all([
      startRegistry(),
      startLookasideServer(),
      createGpgSigner('CRI-O Anchor Trusted', RSA),
      createGpgSigner('CRI-O Anchor Other', RSA),
    ]);
    image = await buildOciImage(join(work, 'app'), { tag: 'v1', layers: [{ size: 48_000 }, { files: { 'etc/motd': 'signed\n' } }], seed: 191 });
    signed = await pushSignedImage(image.dir, 'app:v1', registry, [trusted, other]);
    expect(signed.signatures).toHaveLength(2);
  }, 180_000);

  afterAll(async () => {
    const markdown = table();
    const out = process.env['PULLGUARD_ANCHOR_TABLE'] ?? join(tmpdir(), 'pullguard-crio-anchor-table.md');
    await writeFile(out, markdown);
    console.log(`anchor table (${out}):\n\n${markdown}`);
    await Promise.all([registry?.stop(), lookaside?.stop(), trusted?.dispose(), other?.dispose()]);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  describe(`CRI-O ${PEERS.crio} alone`, () => {
    let crio: RunningCrio;
    const tag = (): string => `${registry.host}/app:v1`;

    beforeAll(async () => {
      crio = await startCrio({
        policy: {
          default: [{ type: 'reject' }],
          transports: { docker: { [registry.host]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: trusted.publicKeyPath }] } },
        },
        registriesD: { 'lookaside.yaml': `docker:\n  ${registry.host}:\n    lookaside: ${lookaside.url}\n` },
        insecureRegistries: [registry.host],
      });
    }, 120_000);

    afterAll(async () => {
      await crio?.destroy();
    });

    const run = async (c: AnchorCase): Promise<Outcome> => {
      await crio.cri.call('RemoveImage', { image: { image: tag() } }).catch(() => undefined);
      await prepare(c);
      const outcome = await pullWith(crio.cri, tag());
      results.crio.set(c.key, outcome);
      console.log(`CRI-O alone / ${c.key}: ${JSON.stringify(outcome)}`);
      return outcome;
    };
    const inCrio = async (): Promise<boolean> => {
      const status = await crio.cri.call<{ image: { id: string } | null }>('ImageStatus', { image: { image: tag() } });
      return status.image !== null;
    };
    const failure = (o: Outcome, text: RegExp): void => {
      expect(o.pulled, JSON.stringify(o)).toBe(false);
      expect(o.code).toBe(2); // UNKNOWN: kubelet's cri-client unwraps the message, reason ErrImagePull
      expect(o.message).toMatch(text);
    };

    it("control: signature-1 valid and nothing more: pulled, and the image is in CRI-O's storage", async () => {
      const o = await run(CASES.find((c) => c.key === 'control')!);
      expect(o.pulled, JSON.stringify(o)).toBe(true);
      expect(o.imageRef).toBe(image.configDigest.slice('sha256:'.length)); // CRI-O answers the bare ID
      expect(await inCrio()).toBe(true);
    });

    it('seed: signature-2 an HTML page fails the whole pull (the problem as reported)', async () => {
      const o = await run(CASES.find((c) => c.key === 'seed')!);
      failure(
        o,
        /Source image rejected: parsing signature http:\/\/\S+\/app@sha256=[0-9a-f]{64}\/signature-2: unrecognized signature format, starting with binary 0x3c/,
      );
      expect(await inCrio()).toBe(false);
    });

    it('403 at signature-2 fails the whole pull', async () => {
      failure(await run(CASES.find((c) => c.key === '403')!), /signature-2.*403 Forbidden/);
      expect(await inCrio()).toBe(false);
    });

    it('503 at signature-2 fails the whole pull', async () => {
      failure(await run(CASES.find((c) => c.key === '503')!), /signature-2.*503 Service Unavailable/);
      expect(await inCrio()).toBe(false);
    });

    it('a reset at signature-2 fails the whole pull', async () => {
      failure(await run(CASES.find((c) => c.key === 'reset')!), /Source image rejected: unexpected EOF/); // no URL, no index
      expect(await inCrio()).toBe(false);
    });

    it(
      'a stall at signature-2: CRI-O waits it out (no lookaside timeout), then pulls',
      async () => {
        const o = await run(CASES.find((c) => c.key === 'stall')!);
        expect(o.pulled, JSON.stringify(o)).toBe(true);
        expect(o.signature2Requests).toBe(1);
      },
      STALL_MS + PULL_DEADLINE_MS,
    );

    it('an empty signature-2 fails the whole pull', async () => {
      failure(await run(CASES.find((c) => c.key === 'empty')!), /parsing signature http:\/\/\S+\/signature-2: empty signature blob/);
      expect(await inCrio()).toBe(false);
    });

    it("an oversized signature-2 fails the whole pull at containers/image's 4 MiB limit", async () => {
      failure(await run(CASES.find((c) => c.key === 'oversized')!), /exceeded maximum allowed size of 4194304 bytes/);
      expect(await inCrio()).toBe(false);
    });
  });

  describe(`pullguard in front of CRI-O ${PEERS.crio} (--runtime-fetch runtime, CRI-O from deploy/crio/)`, () => {
    let crio: RunningCrio;
    let pullguard: RunningPullguard;
    const tag = (): string => `${registry.host}/app:v1`;

    beforeAll(async () => {
      const front = join(work, 'front');
      await mkdir(front, { recursive: true });
      const deployed = await deployedCrioConfig(front, { registry: registry.host });
      crio = await startCrio({ ...deployed.options, insecureRegistries: [registry.host] });
      // pullguard reads the publisher's lookaside and the signedBy policy; CRI-O reads neither.
      const { policy, registriesD } = await writeSigningConfig(front, {
        publicKeyPath: trusted.publicKeyPath,
        lookasideUrl: lookaside.url,
        scope: registry.host,
      });
      pullguard = await startPullguard({
        // Defaults but for the verdict cache: every case runs its own signature phase.
        args: [
          '--signature-policy',
          policy,
          '--registries-d',
          registriesD,
          '--insecure-registry',
          registry.host,
          '--backend',
          crio.endpoint,
          '--runtime-fetch',
          'runtime',
          '--verdict-cache-ttl',
          '0',
        ],
      });
    }, 120_000);

    afterAll(async () => {
      await pullguard?.stop();
      await crio?.destroy();
    });

    for (const c of CASES) {
      it(
        `${c.key}: allowed${c.fault === null ? '' : ' with a warning about signature-2'}, and the image is in CRI-O's storage`,
        async () => {
          await pullguard.client.call('RemoveImage', { image: { image: tag() } }).catch(() => undefined);
          await prepare(c);
          const o = await pullWith(pullguard.client, tag());
          results.pullguard.set(c.key, o);
          console.log(`pullguard in front / ${c.key}: ${JSON.stringify(o)}`);
          expect(o.pulled, JSON.stringify(o)).toBe(true);
          if (c.fault === null) expect(o.warnings).toEqual([]);
          else
            expect(
              o.warnings.some((w) => w.startsWith('PGW001') && w.includes('signature-2')),
              JSON.stringify(o.warnings),
            ).toBe(true);
          expect(o.signature2Requests).toBeGreaterThanOrEqual(1); // a signature phase of its own, not a cached verdict
          // Only pullguard read the lookaside: CRI-O, configured from deploy/crio/, fetched no signature.
          expect(new Set(lookaside.requests.map((r) => String(r.headers['user-agent']).split('/')[0]))).toEqual(new Set(['pullguard']));
          const status = await crio.cri.call<{ image: { id: string; repo_digests: string[] } | null }>('ImageStatus', {
            image: { image: `${registry.host}/app@${signed.manifestDigest}` },
          });
          expect(status.image?.id).toBe(image.configDigest.slice('sha256:'.length));
        },
        STALL_MS + PULL_DEADLINE_MS,
      );
    }
  });
});
