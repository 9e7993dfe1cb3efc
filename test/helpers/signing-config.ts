/**
 * The policy.json + registries.d pair most end-to-end tests need:
 *
 *   const { policy, registriesD } = await writeSigningConfig(dir, { publicKeyPath, lookasideUrl });
 *   // default: signedBy(publicKeyPath) for every image; lookaside for every registry
 *   await writeSigningConfig(dir, { publicKeyPath, lookasideUrl, scope: registry.host });
 *   // scope: signedBy only for that scope (everything else rejected); lookaside only for it
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export async function writeSigningConfig(
  dir: string,
  options: { publicKeyPath: string; lookasideUrl: string; scope?: string },
): Promise<{ policy: string; registriesD: string }> {
  const signedBy = [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: options.publicKeyPath }];
  const policy = join(dir, 'policy.json');
  const registriesD = join(dir, 'registries.d');
  await mkdir(registriesD, { recursive: true });
  if (options.scope === undefined) {
    await writeFile(policy, JSON.stringify({ default: signedBy }));
    await writeFile(join(registriesD, 'default.yaml'), `default-docker:\n  lookaside: ${options.lookasideUrl}\n`);
  } else {
    await writeFile(policy, JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { [options.scope]: signedBy } } }));
    await writeFile(join(registriesD, 'lookaside.yaml'), `docker:\n  ${options.scope}:\n    lookaside: ${options.lookasideUrl}\n`);
  }
  return { policy, registriesD };
}
