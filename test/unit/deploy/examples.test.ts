/**
 * The example node configuration in deploy/ is one set-up, not four unrelated files: every registry
 * the example policy names has a containerd hosts.toml and a CRI-O mirror entry (and nothing else
 * does), and every registry whose images must be signed has a lookaside in registries.d.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, test } from 'vitest';
import { loadRegistriesD } from '../../../src/config/registries-d.js';
import { parseReference } from '../../../src/domain/reference.js';
import { parsePolicy } from '../../../src/policy/parse-policy.js';
import { packageRoot } from '../../../src/util/package-root.js';

const deploy = join(packageRoot(), 'deploy');
const hostOf = (scope: string): string => scope.split('/')[0] as string;

async function examplePolicy() {
  const path = join(deploy, 'containers/policy.json');
  return parsePolicy(await readFile(path, 'utf8'), { source: path });
}

describe('deploy/ examples agree', () => {
  test('containerd certs.d and CRI-O mirrors cover exactly the registries of policy.json', async () => {
    const scopes = [...((await examplePolicy()).transports.get('docker')?.keys() ?? [])];
    const registries = [...new Set(scopes.map(hostOf))].sort();
    expect(registries.length).toBeGreaterThan(0);

    const certsD = join(deploy, 'containerd/certs.d');
    const hostDirs = (await readdir(certsD)).sort();
    expect(hostDirs).toEqual(registries);
    for (const host of hostDirs) {
      const hosts = parseToml(await readFile(join(certsD, host, 'hosts.toml'), 'utf8')) as { server: string; host: Record<string, { capabilities: string[] }> };
      expect(hosts.server, host).toBe(`https://${host}`);
      expect(hosts.host['http://127.0.0.1:5050']?.capabilities, host).toEqual(['pull']);
    }

    const crio = parseToml(await readFile(join(deploy, 'crio/registries.conf.d/50-pullguard-mirror.conf'), 'utf8')) as {
      registry: { prefix: string; location: string; mirror: { location: string; 'pull-from-mirror': string }[] }[];
    };
    expect(crio.registry.map((r) => r.prefix).sort()).toEqual(registries);
    for (const entry of crio.registry) {
      expect(entry.mirror, entry.prefix).toEqual([expect.objectContaining({ location: '127.0.0.1:5050', 'pull-from-mirror': 'digest-only' })]);
    }
  });

  test('every scope that requires signatures has its own lookaside in registries.d', async () => {
    const policy = await examplePolicy();
    const registriesD = await loadRegistriesD(join(deploy, 'containers/registries.d'));
    for (const [scope, requirements] of policy.transports.get('docker') ?? []) {
      if (!requirements.some((r) => r.type === 'signedBy')) continue;
      const lookaside = registriesD.lookasideFor(parseReference(`${scope}/some/image:v1`));
      expect(lookaside?.scope, scope).toBe(scope);
      expect(lookaside?.baseUrl, scope).toMatch(/^https:\/\//);
    }
  });

  test('CRI-O behind pullguard (deploy/crio): accepts every scope pullguard decides on, and reads no signature for it', async () => {
    const scopes = [...((await examplePolicy()).transports.get('docker')?.keys() ?? [])];
    const crioPolicyPath = join(deploy, 'crio/policy.json');
    const crioPolicy = parsePolicy(await readFile(crioPolicyPath, 'utf8'), { source: crioPolicyPath });
    expect([...(crioPolicy.transports.get('docker')?.keys() ?? [])].sort()).toEqual([...scopes].sort());
    for (const [scope, requirements] of crioPolicy.transports.get('docker') ?? [])
      expect(
        requirements.map((r) => r.type),
        scope,
      ).toEqual(['insecureAcceptAnything']);
    // The drop-in names that policy and an empty per-namespace dir, at the paths deploy/README.md gives.
    const dropIn = parseToml(await readFile(join(deploy, 'crio/crio.conf.d/10-pullguard.conf'), 'utf8')) as {
      crio: { image: { signature_policy: string; signature_policy_dir: string } };
    };
    expect(dropIn.crio.image).toEqual({ signature_policy: '/etc/crio/pullguard/policy.json', signature_policy_dir: '/etc/crio/pullguard/policies' });
    // CRI-O's registries.d: for each registry (and pullguard's mirror) a lookaside nothing writes to.
    const registriesD = await loadRegistriesD(join(deploy, 'crio/registries.d'));
    for (const host of [...new Set(scopes.map(hostOf)), '127.0.0.1:5050']) {
      const lookaside = registriesD.lookasideFor(parseReference(`${host}/some/image:v1`));
      expect(lookaside?.scope, host).toBe(host);
      expect(lookaside?.baseUrl, host).toBe('file:///var/lib/pullguard/crio-lookaside-empty');
    }
  });
});
