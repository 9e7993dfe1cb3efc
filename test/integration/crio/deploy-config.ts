/**
 * The CRI-O configuration pullguard ships (deploy/crio/), for the tests: the files verbatim but for
 * the addresses (the example registry `registry.redhat.io` → the test registry, the mirror
 * `127.0.0.1:5050` → the test's mirror) and the installation paths (`/etc/crio/pullguard/`,
 * `/var/lib/pullguard/crio-lookaside-empty` → under the test's dir).
 *
 *   const deployed = await deployedCrioConfig(work, { registry: registry.host, mirror: '127.0.0.1:PORT' });
 *   await startCrio({ ...deployed.options, insecureRegistries: [registry.host] });
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../../src/util/package-root.js';
import type { StartCrioOptions } from '../../helpers/crio.js';

export const DEPLOY_CRIO = join(packageRoot(), 'deploy/crio');

export interface DeployedCrioConfig {
  /** For startCrio: the drop-in, registries.d and (mirror mode) registries.conf.d. */
  readonly options: Pick<StartCrioOptions, 'dropIns' | 'registriesD' | 'registriesConfD'>;
  /** Where the templated deploy/crio/policy.json was written (the drop-in's `signature_policy`). */
  readonly policyPath: string;
  /** The drop-in's `signature_policy_dir` (left empty). */
  readonly policyDir: string;
}

/**
 * `registry` takes the place of `registry.redhat.io`, `secondRegistry` (optional) that of
 * `registry.access.redhat.com`, `mirror` that of `127.0.0.1:5050`.
 */
export async function deployedCrioConfig(work: string, addresses: { registry: string; secondRegistry?: string; mirror?: string }): Promise<DeployedCrioConfig> {
  const installed = join(work, 'etc-crio-pullguard');
  const emptyLookaside = join(work, 'crio-lookaside-empty');
  const template = (text: string): string =>
    text
      .replaceAll('/etc/crio/pullguard/', `${installed}/`)
      .replaceAll('/var/lib/pullguard/crio-lookaside-empty', emptyLookaside)
      .replaceAll('registry.access.redhat.com', addresses.secondRegistry ?? 'registry.access.redhat.com')
      .replaceAll('registry.redhat.io', addresses.registry)
      .replaceAll('127.0.0.1:5050', addresses.mirror ?? '127.0.0.1:5050');
  const read = async (path: string): Promise<string> => template(await readFile(join(DEPLOY_CRIO, path), 'utf8'));
  await mkdir(join(installed, 'policies'), { recursive: true });
  const policyPath = join(installed, 'policy.json');
  await writeFile(policyPath, await read('policy.json'));
  const dropIns: Record<string, string> = {};
  for (const name of await readdir(join(DEPLOY_CRIO, 'crio.conf.d'))) dropIns[name] = await read(join('crio.conf.d', name));
  const registriesD: Record<string, string> = {};
  for (const name of await readdir(join(DEPLOY_CRIO, 'registries.d'))) registriesD[name] = await read(join('registries.d', name));
  const registriesConfD: Record<string, string> = {};
  if (addresses.mirror !== undefined) {
    for (const name of await readdir(join(DEPLOY_CRIO, 'registries.conf.d'))) registriesConfD[name] = await read(join('registries.conf.d', name));
  }
  return { options: { dropIns, registriesD, registriesConfD }, policyPath, policyDir: join(installed, 'policies') };
}
