/**
 * The trust configuration the signature phase asks: which policy decided (and where it came from),
 * and a reload that swaps the configuration for the next pulls, never for one already deciding.
 */
import { describe, expect, it } from 'vitest';
import { embeddedDefaultPolicy, loadPolicyFromText } from '../../../src/config/policy-loader.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { LoadedPolicy, LoadedTrust, ResolvedImage, SignatureSource } from '../../../src/pull/ports.js';
import { signaturePhaseUnder } from '../../../src/pull/signature-phase.js';
import { ConfiguredTrust, TrustConfigurationHolder, type PolicyChooser } from '../../../src/pull/trust-configuration.js';
import { VerdictCache } from '../../../src/pull/verdict-cache.js';
import * as fx from '../../fixtures/signatures/fixtures.js';

const image: ResolvedImage = { ...fx.resolvedFixtureImage(), reference: parseReference('registry.example/app:v1') };
const ACCEPT = '{"default":[{"type":"insecureAcceptAnything"}]}';
const REJECT = '{"default":[{"type":"reject"}]}';

/** Per-namespace files as PolicySelector finds them: `<dir>/<namespace>.json`, else the global file. */
function chooser(byNamespace: Record<string, LoadedPolicy>, global: LoadedPolicy): PolicyChooser {
  return { policyForNamespace: async (namespace) => (namespace !== undefined ? byNamespace[namespace] : undefined) ?? global };
}

describe('ConfiguredTrust', () => {
  it('names where the chosen policy came from: the namespace file, the global file, or the embedded default', async () => {
    const global = await loadPolicyFromText(ACCEPT, '/etc/containers/policy.json');
    const teamA = await loadPolicyFromText(REJECT, '/etc/pullguard/ns/team-a.json');
    const trust = new ConfiguredTrust({ policies: chooser({ 'team-a': teamA }, global), namespaceDir: '/etc/pullguard/ns', signatureSources: [] });
    expect(await trust.policyFor('team-a')).toEqual({
      policy: teamA,
      source: { kind: 'namespace', file: '/etc/pullguard/ns/team-a.json', namespace: 'team-a' },
    });
    expect(await trust.policyFor('team-b')).toEqual({ policy: global, source: { kind: 'file', file: '/etc/containers/policy.json' } });
    expect(await trust.policyFor(undefined)).toEqual({ policy: global, source: { kind: 'file', file: '/etc/containers/policy.json' } });
    const embedded = new ConfiguredTrust({ policies: chooser({}, embeddedDefaultPolicy()), signatureSources: [] });
    expect((await embedded.policyFor('team-a')).source).toEqual({ kind: 'embedded' });
  });
});

describe('signaturePhaseUnder', () => {
  it('decides a pull under the configuration in force when its phase began; a reload applies from the next pull', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const accept = await loadPolicyFromText(ACCEPT, '/etc/containers/old.json');
    const before: LoadedTrust = {
      policyFor: async () => {
        await gate;
        return { policy: accept, source: { kind: 'file', file: '/etc/containers/old.json' } };
      },
      signatureSources: [],
    };
    const reject = await loadPolicyFromText(REJECT, '/etc/containers/new.json');
    const after = new ConfiguredTrust({ policies: chooser({}, reject), signatureSources: [] });
    const trust = new TrustConfigurationHolder(before);
    const phase = signaturePhaseUnder(trust);

    const deciding = phase({ image });
    trust.replace(after);
    release();
    expect(await deciding).toMatchObject({
      verdict: { allowed: true, scope: { policyFile: '/etc/containers/old.json' } },
      policySource: { kind: 'file', file: '/etc/containers/old.json' },
    });
    expect(await phase({ image })).toMatchObject({
      verdict: { allowed: false, scope: { policyFile: '/etc/containers/new.json' } },
      policySource: { kind: 'file', file: '/etc/containers/new.json' },
    });
    expect(trust.current()).toMatchObject({ trust: after, revision: { number: 2 } });
  });

  it("reads signatures from the sources of the configuration in force, with the pull's credentials and signal", async () => {
    const seen: unknown[] = [];
    const source: SignatureSource = {
      yields: 'simple-signing',
      fetch: async (_image, options) => {
        seen.push(options);
        return { signatures: [], troubles: [], end: 'not-found', notices: [], retriedIndices: [] };
      },
    };
    const signedBy = await loadPolicyFromText(
      JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from(fx.keyFixture('trusted.gpg')).toString('base64') }] }),
      '/p.json',
    );
    const phase = signaturePhaseUnder(new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, signedBy), signatureSources: [source] })));
    const signal = new AbortController().signal;
    const result = await phase({ image, credentials: { username: 'u', password: 'p' }, signal });
    expect(result.verdict.denial).toBe('A signature was required, but no signature exists');
    expect(seen).toEqual([{ credentials: { username: 'u', password: 'p' }, signal }]);
  });
});

describe('signaturePhaseUnder with a verdict cache', () => {
  const counting = () => {
    const calls = { fetches: 0 };
    const source: SignatureSource = {
      yields: 'simple-signing',
      fetch: async () => {
        calls.fetches++;
        return { signatures: [], troubles: [], end: 'not-found', notices: [], retriedIndices: [] };
      },
    };
    return { calls, source };
  };
  const signedByPolicy = () =>
    loadPolicyFromText(
      JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from(fx.keyFixture('trusted.gpg')).toString('base64') }] }),
      '/p.json',
    );

  it('answers a second phase for the same digest, reference and revision without reading signatures, and says when and under which revision it was decided', async () => {
    const { calls, source } = counting();
    const accept = await loadPolicyFromText(ACCEPT, '/etc/containers/policy.json');
    let wall = new Date('2030-01-01T00:00:00Z');
    const trust = new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, accept), signatureSources: [source] }), { clock: () => wall });
    const phase = signaturePhaseUnder(trust, { cache: new VerdictCache({ ttlMs: 60_000, denialTtlMs: 30_000 }), clock: () => wall });
    const first = await phase({ image, reuseVerdict: true });
    wall = new Date('2030-01-01T00:01:00Z');
    const second = await phase({ image, reuseVerdict: true, credentials: { username: 'other', password: 'secret' } });
    expect(second.verdict).toBe(first.verdict);
    expect(first.decision).toMatchObject({ cache: 'miss', decidedAt: new Date('2030-01-01T00:00:00Z'), revision: { number: 1 } });
    expect(second.decision).toMatchObject({ cache: 'hit', decidedAt: new Date('2030-01-01T00:00:00Z'), revision: { number: 1 } });
    expect(second.policySource).toEqual({ kind: 'file', file: '/etc/containers/policy.json' });
    // insecureAcceptAnything reads no signatures either way; a signedBy one does, once.
    const signedBy = await signedByPolicy();
    trust.replace(new ConfiguredTrust({ policies: chooser({}, signedBy), signatureSources: [source] }));
    const denied = await phase({ image, reuseVerdict: true });
    expect(denied.decision).toMatchObject({ cache: 'miss', revision: { number: 2 } });
    expect(calls.fetches).toBe(1);
    expect((await phase({ image, reuseVerdict: true })).decision?.cache).toBe('hit');
    expect(calls.fetches).toBe(1);
  });

  it('answers from the cache only for an image on the node (a re-pull); a pull anew verifies and refills it', async () => {
    const { calls, source } = counting();
    const trust = new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, await signedByPolicy()), signatureSources: [source] }));
    const phase = signaturePhaseUnder(trust, { cache: new VerdictCache({ ttlMs: 60_000, denialTtlMs: 30_000 }) });
    await phase({ image });
    expect((await phase({ image })).decision?.cache).toBe('miss');
    expect(calls.fetches).toBe(2);
    expect((await phase({ image, reuseVerdict: true })).decision?.cache).toBe('hit');
    expect(calls.fetches).toBe(2);
  });

  it('after a reload, decides again under the new configuration', async () => {
    const accept = await loadPolicyFromText(ACCEPT, '/etc/containers/old.json');
    const reject = await loadPolicyFromText(REJECT, '/etc/containers/new.json');
    const trust = new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, accept), signatureSources: [] }));
    const phase = signaturePhaseUnder(trust, { cache: new VerdictCache({ ttlMs: 60_000, denialTtlMs: 30_000 }) });
    expect((await phase({ image, reuseVerdict: true })).verdict.allowed).toBe(true);
    trust.replace(new ConfiguredTrust({ policies: chooser({}, reject), signatureSources: [] }));
    const after = await phase({ image, reuseVerdict: true });
    expect(after.verdict.allowed).toBe(false);
    expect(after.decision).toMatchObject({ cache: 'miss', revision: { number: 2 } });
  });

  it("keeps verdicts per policy: a namespace with its own policy never gets another namespace's verdict", async () => {
    const accept = await loadPolicyFromText(ACCEPT, '/etc/containers/policy.json');
    const reject = await loadPolicyFromText(REJECT, '/etc/pullguard/ns/locked.json');
    const trust = new TrustConfigurationHolder(
      new ConfiguredTrust({ policies: chooser({ locked: reject }, accept), namespaceDir: '/etc/pullguard/ns', signatureSources: [] }),
    );
    const phase = signaturePhaseUnder(trust, { cache: new VerdictCache({ ttlMs: 60_000, denialTtlMs: 30_000 }) });
    expect((await phase({ image, reuseVerdict: true, namespace: 'open' })).verdict.allowed).toBe(true);
    expect((await phase({ image, reuseVerdict: true, namespace: 'locked' })).verdict.allowed).toBe(false);
    expect((await phase({ image, reuseVerdict: true, namespace: 'other' })).decision?.cache).toBe('hit');
  });

  it('does not keep a phase that was cancelled', async () => {
    const controller = new AbortController();
    const source: SignatureSource = {
      yields: 'simple-signing',
      fetch: async () => {
        controller.abort();
        throw new Error('aborted');
      },
    };
    const trust = new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, await signedByPolicy()), signatureSources: [source] }));
    const cache = new VerdictCache({ ttlMs: 60_000, denialTtlMs: 30_000 });
    await expect(signaturePhaseUnder(trust, { cache })({ image, reuseVerdict: true, signal: controller.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(cache.size).toBe(0);
  });
});
