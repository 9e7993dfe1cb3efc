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
    expect(await trust.policyFor('team-a')).toEqual({ policy: teamA, source: { kind: 'namespace', file: '/etc/pullguard/ns/team-a.json', namespace: 'team-a' } });
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
    expect(await deciding).toMatchObject({ verdict: { allowed: true, scope: { policyFile: '/etc/containers/old.json' } }, policySource: { kind: 'file', file: '/etc/containers/old.json' } });
    expect(await phase({ image })).toMatchObject({ verdict: { allowed: false, scope: { policyFile: '/etc/containers/new.json' } }, policySource: { kind: 'file', file: '/etc/containers/new.json' } });
    expect(trust.current()).toBe(after);
  });

  it('reads signatures from the sources of the configuration in force, with the pull\'s credentials and signal', async () => {
    const seen: unknown[] = [];
    const source: SignatureSource = {
      fetch: async (_image, options) => {
        seen.push(options);
        return { signatures: [], troubles: [], end: 'not-found', notices: [], retriedIndices: [] };
      },
    };
    const signedBy = await loadPolicyFromText(JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from(fx.keyFixture('trusted.gpg')).toString('base64') }] }), '/p.json');
    const phase = signaturePhaseUnder(new TrustConfigurationHolder(new ConfiguredTrust({ policies: chooser({}, signedBy), signatureSources: [source] })));
    const signal = new AbortController().signal;
    const result = await phase({ image, credentials: { username: 'u', password: 'p' }, signal });
    expect(result.verdict.denial).toBe('A signature was required, but no signature exists');
    expect(seen).toEqual([{ credentials: { username: 'u', password: 'p' }, signal }]);
  });
});
