import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadPolicyFromText } from '../../../src/config/policy-loader.js';
import type { SignatureFetchReport, SignatureTrouble, UntrustedSignatureBlob } from '../../../src/domain/signature.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { LoadedPolicy, ResolvedImage, SignatureSource } from '../../../src/pull/ports.js';
import { runSignaturePhase } from '../../../src/pull/signature-phase.js';
import * as fx from '../../fixtures/signatures/fixtures.js';

const URL_BASE = 'http://127.0.0.1:1/sigs/app@sha256=x';
const image: ResolvedImage = fx.resolvedFixtureImage();

const sig = (index: number, name: Parameters<typeof fx.signatureFixture>[0]): UntrustedSignatureBlob => ({
  location: { source: 'lookaside', index, url: `${URL_BASE}/signature-${index}` },
  format: 'simple-signing',
  bytes: fx.signatureFixture(name),
});
const htmlTrouble = (index: number): SignatureTrouble => ({
  location: { source: 'lookaside', index, url: `${URL_BASE}/signature-${index}` },
  kind: 'unrecognized-format',
  message: 'unrecognized signature format, starting with binary 0x3c',
  httpStatus: 200,
  contentType: 'text/html',
  firstByte: 0x3c,
  attempts: 1,
});

/** A SignatureSource (the port) that serves a fixed report and counts calls. */
function staticSource(report: Partial<SignatureFetchReport>): SignatureSource & { calls: number } {
  const source = {
    yields: 'simple-signing' as const,
    calls: 0,
    async fetch() {
      source.calls++;
      return { signatures: [], troubles: [], end: 'not-found', notices: [], retriedIndices: [], ...report } as SignatureFetchReport;
    },
  };
  return source;
}

let dir: string;
let signedBy: LoadedPolicy;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-phase-'));
  await writeFile(join(dir, 'trusted.gpg'), fx.keyFixture('trusted.gpg'));
  signedBy = await loadPolicyFromText(
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          'registry.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: join(dir, 'trusted.gpg') }],
          'registry.example/app:v1-open': [{ type: 'insecureAcceptAnything' }],
        },
      },
    }),
    'policy.json',
  );
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('runSignaturePhase', () => {
  test('valid skopeo signature + HTML page: allowed with a PGW001 warning', async () => {
    const { verdict } = await runSignaturePhase({
      policy: signedBy,
      image,
      sources: [staticSource({ signatures: [sig(1, 'valid')], troubles: [htmlTrouble(2)] })],
    });
    expect(verdict).toMatchObject({ allowed: true, scope: { policyFile: 'policy.json', scope: 'registry.example' } });
    expect(verdict.warnings.map((w) => w.code)).toEqual(['PGW001']);
  });
  test('untrusted + wrong identity + HTML: denied with both rejections and the trouble', async () => {
    const { verdict } = await runSignaturePhase({
      policy: signedBy,
      image,
      sources: [staticSource({ signatures: [sig(1, 'untrusted-key'), sig(3, 'wrong-identity')], troubles: [htmlTrouble(2)] })],
    });
    expect(verdict.allowed).toBe(false);
    expect(verdict.denial).toBe(
      `None of the signatures were accepted, reasons: signature by key ${fx.UNTRUSTED_FPR} is not accepted; Signature for identity "${fx.WRONG_SIGNED_IDENTITY}" is not accepted` +
        `; additionally 1 signature could not be read: signature-2 (${URL_BASE}/signature-2): unrecognized signature format, starting with binary 0x3c (HTTP 200, Content-Type text/html)`,
    );
  });
  test('a source that throws is a trouble, never an acceptance', async () => {
    const broken: SignatureSource = { yields: 'simple-signing', fetch: () => Promise.reject(new Error('socket hang up')) };
    const { verdict } = await runSignaturePhase({ policy: signedBy, image, sources: [broken] });
    expect(verdict.allowed).toBe(false);
    expect(verdict.denial).toMatch(/^A signature was required, but no signature exists; additionally 1 signature could not be read: .*socket hang up/);
  });
  test('insecureAcceptAnything and reject never fetch', async () => {
    const source = staticSource({ signatures: [sig(1, 'valid')] });
    const open = { ...image, reference: parseReference('registry.example/app:v1-open') };
    expect((await runSignaturePhase({ policy: signedBy, image: open, sources: [source] })).verdict.allowed).toBe(true);
    const other = { ...image, reference: parseReference('elsewhere.example/app:v1') };
    expect((await runSignaturePhase({ policy: signedBy, image: other, sources: [source] })).verdict.denial).toBe(
      'Running image docker://elsewhere.example/app:v1 is rejected by policy.',
    );
    expect(source.calls).toBe(0);
  });
  test('no signatures (gap/404 at 1) → no signature exists', async () => {
    const { verdict } = await runSignaturePhase({ policy: signedBy, image, sources: [staticSource({})] });
    expect(verdict.denial).toBe('A signature was required, but no signature exists');
  });
});
