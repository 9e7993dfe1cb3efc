/**
 * End to end through the real server: images pushed to the real docker-registry and signed with real
 * skopeo + gpg; signatures served over HTTP by a fault-injecting lookaside server; PullImage called
 * over the unix socket with a grpc-js client. Covers partial sufficiency (allowed with warnings),
 * denials that report both rejections and troubles, and "nothing stored before the verdict".
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRpcRoot } from '../../src/transport/cri-proto.js';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { useLookasideServer, type LookasideFault } from '../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { promisify } from 'node:util';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';

const execFileAsync = promisify(execFile);
const lookaside = useLookasideServer();
const LOOKASIDE_TIMEOUT_MS = 1000;
const BUDGET_MS = 6000;

let work: string;
let registry: StartedRegistry;
let trusted: GpgSigner;
let untrusted: GpgSigner;
let app: SignedPush; // signature-1 by trusted, signature-2 by untrusted
let fresh: { image: BuiltImage; signed: SignedPush }; // signed by the untrusted key only
let elsewhere: FaultRegistry; // a registry outside every signed scope
let pullguard: RunningPullguard;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-e2e-'));
  [registry, trusted, untrusted] = await Promise.all([startRegistry(), createGpgSigner('Trusted Signer'), createGpgSigner('Untrusted Signer')]);
  const appImage = await buildOciImage(join(work, 'app'), {
    tag: 'v1',
    layers: [{ size: 64 * 1024 }, { files: { 'etc/motd': 'signed' } }],
    user: '1000:1000',
    seed: 11,
  });
  app = await pushSignedImage(appImage.dir, 'app:v1', registry, [trusted, untrusted]);
  const freshImage = await buildOciImage(join(work, 'fresh'), { tag: 'v1', layers: [{ size: 32 * 1024 }], seed: 12 });
  fresh = { image: freshImage, signed: await pushSignedImage(freshImage.dir, 'fresh:v1', registry, untrusted) };
  const unsigned = await buildOciImage(join(work, 'unsigned'), { tag: 'v1', layers: [{ size: 1024 }], seed: 13 });
  await pushImage(unsigned.dir, 'unsigned:v1', registry);
  elsewhere = await startFaultRegistry();
  elsewhere.addImage('elsewhere', 'v1', unsigned);

  const { policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: trusted.publicKeyPath, lookasideUrl: lookaside.url, scope: registry.host });
  pullguard = await startPullguard({
    args: [
      '--signature-policy',
      policy,
      '--registries-d',
      registriesD,
      '--insecure-registry',
      registry.host,
      '--insecure-registry',
      elsewhere.host,
      '--lookaside-timeout',
      `${LOOKASIDE_TIMEOUT_MS}ms`,
      '--signature-budget',
      `${BUDGET_MS}ms`,
      // Each case pulls the same stored image again under other lookaside faults and checks what
      // that signature phase decided: no verdict cache (its own tests: test/integration/re-pull.test.ts).
      '--verdict-cache-ttl',
      '0',
    ],
  });
}, 120_000);

afterAll(async () => {
  await pullguard?.stop();
  await Promise.all([registry?.stop(), elsewhere?.stop(), trusted?.dispose(), untrusted?.dispose()]);
  await rm(work, { recursive: true, force: true });
});

interface PullOutcome {
  readonly imageRef?: string;
  readonly error?: grpc.ServiceError;
  readonly warnings: string[];
  readonly ms: number;
}

async function pull(image: string, auth?: { username: string; password: string }): Promise<PullOutcome> {
  const warnings: string[] = [];
  const started = Date.now();
  try {
    const response = await pullguard.client.call<{ image_ref: string }>(
      'PullImage',
      { image: { image }, ...(auth ? { auth } : {}) },
      {
        onTrailers: (md) => warnings.push(...md.get('pullguard-warnings').map(String)),
      },
    );
    return { imageRef: response.image_ref, warnings, ms: Date.now() - started };
  } catch (err) {
    return { error: err as grpc.ServiceError, warnings, ms: Date.now() - started };
  }
}

const serve = (push: SignedPush, index: number, bytes: Uint8Array): Promise<string> =>
  lookaside.writeSignature(push.repoPath, push.manifestDigest, index, bytes);

function decodeDetails(err: grpc.ServiceError): {
  code: number;
  message: string;
  reason: string;
  metadata: Record<string, string>;
  violations: { type: string; subject: string; description: string }[];
} {
  const root = loadRpcRoot();
  const Status = root.lookupType('google.rpc.Status');
  const status = Status.toObject(Status.decode(err.metadata.get('grpc-status-details-bin')[0] as Buffer), { defaults: true }) as {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  const info = root.lookupType('google.rpc.ErrorInfo').toObject(root.lookupType('google.rpc.ErrorInfo').decode(status.details[0]!.value)) as {
    reason: string;
    metadata: Record<string, string>;
  };
  const pf = status.details[1]
    ? (root
        .lookupType('google.rpc.PreconditionFailure')
        .toObject(root.lookupType('google.rpc.PreconditionFailure').decode(status.details[1].value), { defaults: true }) as {
        violations: { type: string; subject: string; description: string }[];
      })
    : { violations: [] };
  return { code: status.code, message: status.message, reason: info.reason, metadata: info.metadata, violations: pf.violations };
}

describe('PullImage with lookaside signatures (real skopeo signatures, real registry)', () => {
  it('accepts an image whose signature-1 verifies and records which signature satisfied the policy', async () => {
    await serve(app, 1, app.signatures[0]!);
    const outcome = await pull(`${registry.host}/app:v1`);
    expect(outcome.error?.details).toBeUndefined();
    expect(outcome.imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(outcome.warnings).toEqual([]);
    const status = await pullguard.client.call<{ image: { id: string; repo_tags: string[]; uid: { value: string } | null }; info: Record<string, string> }>(
      'ImageStatus',
      { image: { image: `${registry.host}/app:v1` }, verbose: true },
    );
    expect(status.image.id).toBe(outcome.imageRef);
    expect(status.image.repo_tags).toEqual([`${registry.host}/app:v1`]);
    expect(status.image.uid?.value).toBe('1000');
    const record = JSON.parse(status.info['verification']!) as {
      requirements: { satisfiedBy?: { location: { index: number }; signerPrimaryKeyFingerprint: string } }[];
      signatures: unknown[];
    };
    expect(record.requirements[0]!.satisfiedBy).toMatchObject({ location: { index: 1 }, signerPrimaryKeyFingerprint: trusted.fingerprint });
    expect(record.signatures).toHaveLength(1);
  });

  const partialCases: { name: string; fault: LookasideFault; warning: RegExp }[] = [
    { name: 'an HTML page', fault: { html: true }, warning: /signature-2.*unrecognized signature format, starting with binary 0x3c/ },
    { name: 'HTTP 500', fault: { status: 500 }, warning: /signature-2.*500/ },
    { name: 'HTTP 403', fault: { status: 403 }, warning: /signature-2.*403/ },
    { name: 'HTTP 503', fault: { status: 503 }, warning: /signature-2.*503/ },
    { name: 'a connection reset', fault: { reset: true }, warning: /signature-2/ },
    { name: 'an empty body', fault: { empty: true }, warning: /signature-2.*empty signature blob/ },
    { name: 'a 5 MiB body', fault: { bytes: 5 * 1024 * 1024 }, warning: /signature-2.*exceeded maximum allowed size of 4194304 bytes/ },
    { name: 'an ASCII-armoured copy', fault: { armored: true }, warning: /signature-2.*0x2d/ },
    { name: 'a stall longer than the timeout', fault: { stallMs: 3 * LOOKASIDE_TIMEOUT_MS, headers: true }, warning: /signature-2/ },
  ];
  for (const { name, fault, warning } of partialCases) {
    it(`accepts a valid signature-1 with ${name} at signature-2, with a warning`, async () => {
      await serve(app, 1, app.signatures[0]!);
      await serve(app, 2, app.signatures[1]!);
      lookaside.fault(2, fault);
      const outcome = await pull(`${registry.host}/app:v1`);
      expect(outcome.error?.details).toBeUndefined();
      expect(outcome.imageRef).toMatch(/^sha256:/);
      expect(outcome.warnings.some((w) => w.startsWith('PGW001') && warning.test(w))).toBe(true);
      expect(outcome.ms).toBeLessThan(BUDGET_MS + 2000);
    });
  }

  it('accepts when the trouble comes first (HTML at signature-1, valid at signature-2)', async () => {
    await serve(app, 1, app.signatures[1]!);
    await serve(app, 2, app.signatures[0]!);
    lookaside.fault(1, { html: true });
    const outcome = await pull(`${registry.host}/app:v1`);
    expect(outcome.imageRef).toMatch(/^sha256:/);
    expect(outcome.warnings.join('\n')).toMatch(/PGW001 .*signature-1/);
  });

  it('accepts a valid signature after one by an untrusted key, warning about the rejected one', async () => {
    await serve(app, 1, app.signatures[1]!);
    await serve(app, 2, app.signatures[0]!);
    const outcome = await pull(`${registry.host}/app:v1`);
    expect(outcome.imageRef).toMatch(/^sha256:/);
    expect(outcome.warnings.join('\n')).toMatch(/PGW002 .*signature-1/);
  });

  it('denies with both the rejection and the trouble, and stores nothing of the image', async () => {
    await serve(fresh.signed, 1, fresh.signed.signatures[0]!);
    await serve(fresh.signed, 2, fresh.signed.signatures[0]!);
    lookaside.fault(2, { html: true });
    const outcome = await pull(`${registry.host}/fresh:v1`);
    const err = outcome.error!;
    expect(err.code).toBe(2);
    expect(err.details).toMatch(
      /^SignatureValidationFailed: Source image rejected: signature by key [0-9A-F]+ is not accepted; additionally 1 signature could not be read: signature-2 .*0x3c/,
    );
    expect(err.details).not.toMatch(/\n/);
    const details = decodeDetails(err);
    expect(details.code).toBe(err.code);
    expect(details.message).toBe(err.details);
    expect(details.reason).toBe('SIGNATURE_VALIDATION_FAILED');
    expect(details.metadata).toMatchObject({ manifestDigest: fresh.signed.manifestDigest, scope: registry.host });
    expect(details.violations.map((v) => v.type)).toEqual(['SIGNATURE_REJECTED', 'SIGNATURE_UNREADABLE']);
    for (const blob of [fresh.image.configDigest, ...fresh.image.layers.map((l) => l.digest)]) {
      expect(existsSync(join(pullguard.stateDir, 'store', 'blobs', 'sha256', blob.slice(7)))).toBe(false);
    }
    const list = await pullguard.client.call<{ images: { repo_tags: string[] }[] }>('ListImages', {});
    expect(list.images.flatMap((i) => i.repo_tags)).not.toContain(`${registry.host}/fresh:v1`);
  });

  it('denies every trouble kind when no signature verifies, naming the troubles', async () => {
    lookaside.fault(1, { status: 503 });
    lookaside.fault(2, { reset: true });
    lookaside.fault(3, { empty: true });
    const outcome = await pull(`${registry.host}/app:v1`);
    expect(outcome.error?.details).toMatch(
      /^SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists; additionally 3 signatures could not be read: signature-1 .*503/,
    );
  });

  it('treats a gap (404 at signature-1, a valid signature-2) as no signature, like upstream', async () => {
    await serve(app, 2, app.signatures[0]!);
    const outcome = await pull(`${registry.host}/app:v1`);
    expect(outcome.error?.details).toBe('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
    expect(lookaside.requestsFor(2).length).toBeGreaterThanOrEqual(0);
  });

  it('denies an unsigned image with the upstream message, byte-identical for every credential', async () => {
    const first = await pull(`${registry.host}/unsigned:v1`, { username: 'alice', password: 'first-secret-pw' });
    const second = await pull(`${registry.host}/unsigned:v1`, { username: 'bob', password: 'second-secret-pw' });
    expect(first.error?.details).toBe('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
    expect(second.error?.details).toBe(first.error?.details);
    expect(
      Buffer.compare(first.error!.metadata.get('grpc-status-details-bin')[0] as Buffer, second.error!.metadata.get('grpc-status-details-bin')[0] as Buffer),
    ).toBe(0);
    expect(pullguard.logs().join('\n')).not.toMatch(/first-secret-pw|second-secret-pw/);
  });

  it('rejects images outside any signed scope by the default reject requirement without fetching signatures', async () => {
    const before = lookaside.requests.length;
    const outcome = await pull(`${elsewhere.host}/elsewhere:v1`);
    // The manifest was resolved (the policy decides after that), then the default requirement said no.
    expect(outcome.error?.details).toBe(
      `SignatureValidationFailed: Source image rejected: Running image docker://${elsewhere.host}/elsewhere:v1 is rejected by policy.`,
    );
    expect(elsewhere.requests.some((r) => r.path.startsWith('/v2/elsewhere/manifests/'))).toBe(true);
    expect(elsewhere.requests.filter((r) => r.path.includes('/blobs/'))).toEqual([]);
    expect(lookaside.requests.length).toBe(before);
  });

  it('logs each warning as a structured warn line', async () => {
    await serve(app, 1, app.signatures[0]!);
    lookaside.fault(2, { html: true });
    const before = pullguard.logRecords().length;
    await pull(`${registry.host}/app:v1`);
    // pino writes asynchronously: wait for this pull's lines.
    const deadline = Date.now() + 5000;
    let warnLines: Record<string, unknown>[] = [];
    while (warnLines.length === 0 && Date.now() < deadline) {
      warnLines = pullguard
        .logRecords()
        .slice(before)
        .filter((r) => r['level'] === 40 && r['warningCode'] === 'PGW001');
      if (warnLines.length === 0) await new Promise((r) => setTimeout(r, 25));
    }
    expect(warnLines[0]).toMatchObject({ image: `${registry.host}/app:v1`, signatureIndex: 2, rpc: 'PullImage' });
    expect(String(warnLines[0]!['url'])).toMatch(/signature-2$/);
  });

  it('inspect --signatures shows the forensic record; verify re-checks it offline and fails once the key is no longer trusted', async () => {
    await serve(app, 1, app.signatures[0]!);
    lookaside.fault(2, { html: true });
    expect((await pull(`${registry.host}/app:v1`)).imageRef).toMatch(/^sha256:/);
    const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      execFileAsync(process.execPath, [MAIN, ...args]).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const inspect = await cli(['inspect', `${registry.host}/app:v1`, '--signatures', '--socket', pullguard.socket]);
    expect(inspect.code).toBe(0);
    const record = JSON.parse(inspect.stdout) as {
      requirements: { satisfiedBy: { location: { index: number } } }[];
      troubles: { location: { index: number }; kind: string }[];
      signatures: { blob: string }[];
    };
    expect(record.requirements[0]!.satisfiedBy.location.index).toBe(1);
    expect(record.troubles).toMatchObject([{ location: { index: 2 }, kind: 'unrecognized-format' }]);
    expect(record.signatures).toHaveLength(1);

    await pullguard.stop({ keepState: true });
    const policyPath = join(work, 'policy.json');
    const ok = await cli(['verify', `${registry.host}/app:v1`, '--state-dir', pullguard.stateDir, '--signature-policy', policyPath]);
    expect(ok.stdout).toMatch(/^OK: /);
    expect(ok.code).toBe(0);
    const otherKeyPolicy = join(work, 'policy-other-key.json');
    await writeFile(otherKeyPolicy, JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: untrusted.publicKeyPath }] }));
    const denied = await cli(['verify', `${registry.host}/app:v1`, '--state-dir', pullguard.stateDir, '--signature-policy', otherKeyPolicy]);
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(/^NOT SATISFIED: .*is not accepted/);
  });
});
