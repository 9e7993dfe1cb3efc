/**
 * critest (cri-tools' own conformance suite, the current release, built from its module by
 * .ci/build-peers) runs its ImageService specs against the real `pullguard serve`.
 *
 * The specs pull `gcr.io/k8s-staging-cri-tools/test-image-*` and `registry.k8s.io/pause:3.9` /
 * `k8s.gcr.io/pause:3.9`. Nothing here reaches those registries: the harness builds stand-ins with
 * the properties each spec checks (a user of `1002`, `www-data`, `1003:…`, `www-data:…`; three
 * different images; one image under three tags; the same image in two registries), pushes them to a
 * loopback registry, and pullguard's registries.conf rewrites those prefixes to it (a `location`,
 * not a mirror, so no pull ever falls back to the internet). The names the specs see are theirs.
 *
 * One spec cannot run offline: "public image with digest" pulls
 * `…/test-image-digest@sha256:9700f9a2…`, a digest of upstream bytes no stand-in can have. It is
 * skipped by name, and only it.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdUnavailableReason, startContainerd } from '../helpers/containerd.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { PEERS, peerBinary, peerUnavailableReason } from '../helpers/peers.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';

const STAGING = 'k8s-staging-cri-tools';
/** The one spec whose image is pinned to upstream bytes. */
const DIGEST_SPEC = 'public image with digest should be pulled and removed';

let work: string;
let registry: StartedRegistry;
let pullguard: RunningPullguard;
let serveArgs: string[];

/** repository:tag under the loopback registry → the image's user and a seed (same seed = same image). */
const STAND_INS: readonly { readonly name: string; readonly user?: string; readonly seed: number }[] = [
  { name: `${STAGING}/test-image-tag:test`, seed: 1 },
  { name: `${STAGING}/test-image-tag:all`, seed: 2 },
  { name: `${STAGING}/test-image-latest:latest`, seed: 3 },
  { name: `${STAGING}/test-image-user-uid:latest`, user: '1002', seed: 4 },
  { name: `${STAGING}/test-image-user-username:latest`, user: 'www-data', seed: 5 },
  { name: `${STAGING}/test-image-user-uid-group:latest`, user: '1003:users', seed: 6 },
  { name: `${STAGING}/test-image-user-username-group:latest`, user: 'www-data:users', seed: 7 },
  { name: `${STAGING}/test-image-predefined-group:latest`, user: '1000:50000', seed: 8 },
  { name: `${STAGING}/test-image-1:latest`, seed: 11 },
  { name: `${STAGING}/test-image-2:latest`, seed: 12 },
  { name: `${STAGING}/test-image-3:latest`, seed: 13 },
  { name: `${STAGING}/test-image-tags:1`, seed: 20 },
  { name: `${STAGING}/test-image-tags:2`, seed: 20 },
  { name: `${STAGING}/test-image-tags:3`, seed: 20 },
  { name: 'pause:3.9', seed: 30 },
];

function run(command: string, args: readonly string[], timeoutMs: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: `${stdout}${stderr}` }),
    );
  });
}

beforeAll(async () => {
  const missing = peerUnavailableReason('critest');
  // A missing critest fails the run rather than skipping it: .ci/run builds it.
  if (missing !== undefined) throw new Error(`critest ${PEERS.critest} cannot run: ${missing}`);
  work = await mkdtemp(join(tmpdir(), 'pullguard-critest-'));
  registry = await startRegistry();
  const built = new Map<number, string>();
  for (const { name, user, seed } of STAND_INS) {
    let dir = built.get(seed);
    if (dir === undefined) {
      dir = (
        await buildOciImage(join(work, `img-${seed}`), {
          tag: 'v1',
          layers: [{ size: 1_000 + seed }],
          seed: 4000 + seed,
          ...(user !== undefined ? { user } : {}),
        })
      ).dir;
      built.set(seed, dir);
    }
    await pushImage(dir, name, registry, { layoutTag: 'v1' });
  }
  const registriesConf = join(work, 'registries.conf');
  const location = (prefix: string, path: string): string => `[[registry]]\nprefix = "${prefix}"\nlocation = "${registry.host}/${path}"\ninsecure = true\n`;
  await writeFile(
    registriesConf,
    [location(`gcr.io/${STAGING}`, STAGING), location('registry.k8s.io/pause', 'pause'), location('k8s.gcr.io/pause', 'pause')].join('\n'),
  );
  const policy = join(work, 'policy.json');
  // critest checks the CRI, not the policy: accepted (signature enforcement has its own suites).
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const registriesD = join(work, 'registries.d');
  await mkdir(registriesD);
  serveArgs = ['--signature-policy', policy, '--registries-d', registriesD, '--registries-conf', registriesConf, '--log-level', 'info'];
  pullguard = await startPullguard({ args: serveArgs });
}, 180_000);

afterAll(async () => {
  await pullguard?.stop();
  await registry?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

async function runCritest(socket: string): Promise<void> {
  const endpoint = `unix://${socket}`;
  const { code, output } = await run(
    peerBinary('critest') as string,
    [
      `--runtime-endpoint=${endpoint}`,
      `--image-endpoint=${endpoint}`,
      '--ginkgo.focus=Image Manager',
      `--ginkgo.skip=${DIGEST_SPEC}`,
      '--ginkgo.no-color',
      '--ginkgo.v',
    ],
    600_000,
  );
  console.log(`critest ${PEERS.critest}: ${/Ran \d+ of \d+ Specs[^\n]*\n[^\n]*/.exec(output)?.[0] ?? output.slice(-3000)}`);
  expect(output, output.slice(-6000)).toMatch(/SUCCESS! -- 9 Passed \| 0 Failed/);
  expect(code).toBe(0);
  // Every Image Manager spec of cri-tools v1.37.0 but the skipped digest one: 9 of its 10.
  expect(Number(/Ran (\d+) of/.exec(output)?.[1])).toBe(9);
  expect(output).not.toContain(`• [${DIGEST_SPEC}`);
}

describe(`critest ${PEERS.critest}: the ImageService specs against pullguard`, () => {
  it("pullguard's own image store: every Image Manager spec passes (the upstream-digest spec skipped by name)", async () => {
    await runCritest(pullguard.socket);
  }, 660_000);

  it.skipIf(containerdUnavailableReason('2') !== undefined)(
    'pullguard in front of containerd 2 (runtime fetch): every Image Manager spec passes',
    async () => {
      // containerd reaches the same stand-ins under the names pullguard hands it (name@digest).
      const containerd = await startContainerd({
        release: '2',
        servedBy: { 'gcr.io': `http://${registry.host}`, 'registry.k8s.io': `http://${registry.host}`, 'k8s.gcr.io': `http://${registry.host}` },
      });
      const front = await startPullguard({ args: [...serveArgs, '--backend', containerd.endpoint] });
      try {
        await runCritest(front.socket);
      } finally {
        await front.stop();
        await containerd.destroy();
      }
    },
    660_000,
  );
});
