/**
 * cosign as the tests run it (built by .ci/build-peers): an empty HOME and TUF root of its own under
 * `work`, no network but loopback, and the password of the key pairs it generates.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export async function cosignEnvironment(work: string): Promise<Record<string, string>> {
  await mkdir(join(work, 'home'), { recursive: true });
  return {
    PATH: process.env.PATH ?? '',
    HOME: join(work, 'home'),
    TUF_ROOT: join(work, 'tuf'),
    COSIGN_PASSWORD: 'pullguard-test',
    COSIGN_YES: 'true',
    LD_PRELOAD: '',
  };
}
