/**
 * The real peers built from their Go modules by `.ci/build-peers` (pinned there and here), found in
 * the same cache:
 *
 *   peerBinary('containerd', 'containerd')   // '/var/cache/pullguard-peers/containerd-v2.4.2/bin/containerd' or undefined
 *   peerUnavailableReason('crictl')          // why a test cannot use it, or undefined
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** name → pinned version; keep in step with PEERS in .ci/build-peers. */
export const PEERS = {
  containerd: 'v2.4.2',
  crictl: 'v1.37.0',
  // Signs images for the sigstore interop tests (test/integration/sigstore/cosign-interop.test.ts).
  cosign: 'v2.6.5',
  // A real node (test/node/): kubelet + kube-apiserver, etcd, and the static pause/app programs.
  kubernetes: 'v1.37.2',
  'containerd-shim': 'v2.4.2',
  etcd: 'v3.7.3',
  nodebins: 'v1',
  // cri-tools' conformance suite (a test binary): test/integration/critest.test.ts.
  critest: 'v1.37.0',
  // Pushes OCI artifacts (artifactType, empty or own configs, non-tar layers) for the image-volume tests.
  oras: 'v1.3.6',
  // CRI-O (test/integration/crio/): crio + pinns; conmon and runc from Debian.
  crio: 'v1.36.3',
} as const;

export type PeerName = keyof typeof PEERS;

function cacheDirs(): string[] {
  const configured = process.env['PULLGUARD_PEERS'];
  return configured !== undefined && configured !== '' ? [configured] : ['/var/cache/pullguard-peers', join(homedir(), '.cache/pullguard-peers')];
}

/** The directory of a built peer, or undefined when `.ci/build-peers` has not built it. */
export function peerDir(name: PeerName): string | undefined {
  for (const cache of cacheDirs()) {
    const dir = join(cache, `${name}-${PEERS[name]}`);
    if (existsSync(join(dir, '.built'))) return dir;
  }
  return undefined;
}

export function peerBinary(name: PeerName, binary: string = name): string | undefined {
  const dir = peerDir(name);
  return dir === undefined ? undefined : join(dir, 'bin', binary);
}

export function peerUnavailableReason(name: PeerName): string | undefined {
  return peerDir(name) === undefined ? `${name} ${PEERS[name]} is not built (run: bash .ci/build-peers ${name})` : undefined;
}
