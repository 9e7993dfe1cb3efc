/**
 * Platform normalisation and index instance selection, after containerd's default matcher:
 * arm64 with no variant equals arm64/v8; an arm/v7 node also runs v6 and v5 images (best first).
 */
import type { Descriptor, Platform } from '../domain/image.js';

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  ia32: { architecture: '386' },
  x64: { architecture: 'amd64' },
};

/** Normalises architecture aliases and default variants (arm64 → v8, arm → v7). */
export function normalisePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  const alias = ARCH_ALIASES[architecture];
  if (alias !== undefined) {
    architecture = alias.architecture;
    variant = variant ?? alias.variant;
  }
  if (architecture === 'arm64' && (variant === undefined || variant === '' || variant === '8')) variant = 'v8';
  if (architecture === 'arm' && (variant === undefined || variant === '')) variant = 'v7';
  if (architecture === 'arm' && /^[5-8]$/.test(variant ?? '')) variant = `v${variant}`;
  if (variant === '') variant = undefined;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/** Maps Node's `process.arch` to an OCI platform (the caller passes `process.arch` in). */
export function platformForNodeArch(arch: string, os = 'linux'): Platform {
  const table: Record<string, Platform> = {
    x64: { os, architecture: 'amd64' },
    arm64: { os, architecture: 'arm64', variant: 'v8' },
    arm: { os, architecture: 'arm', variant: 'v7' },
    ia32: { os, architecture: '386' },
    ppc64: { os, architecture: 'ppc64le' },
    s390x: { os, architecture: 's390x' },
    riscv64: { os, architecture: 'riscv64' },
  };
  return table[arch] ?? { os, architecture: arch };
}

/** Rank of `candidate` for `wanted` (0 best), or -1 if it cannot run there. */
export function platformRank(wanted: Platform, candidate: Platform): number {
  const w = normalisePlatform(wanted);
  const c = normalisePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return -1;
  if (w.architecture === 'arm') {
    const wv = Number((w.variant ?? 'v7').slice(1));
    const cv = Number((c.variant ?? 'v7').slice(1));
    return cv <= wv && cv >= 5 ? wv - cv : -1;
  }
  if (w.variant === undefined) return c.variant === undefined ? 0 : 1;
  return w.variant === c.variant ? 0 : -1;
}

/** The best instance for `wanted`, first in index order among equals; undefined if none fits. */
export function selectInstance(manifests: readonly Descriptor[], wanted: Platform): Descriptor | undefined {
  let best: { d: Descriptor; rank: number } | undefined;
  for (const d of manifests) {
    if (d.platform === undefined) continue;
    const rank = platformRank(wanted, d.platform);
    if (rank >= 0 && (best === undefined || rank < best.rank)) best = { d, rank };
  }
  return best?.d;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}
