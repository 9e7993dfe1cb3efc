/**
 * Scope lookup for the `docker` transport (c/image `requirementsForImageRef` +
 * `DockerReferenceNamespaces`). Most specific wins; lists are never merged. Pure.
 */
import { formatReference, type ImageReference } from '../domain/reference.js';
import type { PolicyScope } from '../domain/signature.js';
import type { Policy, PolicyRequirement } from './types.js';

/**
 * The exact policy identity of a reference: `host/ns/repo:tag` or `host/ns/repo@digest`.
 * A reference with both (which c/image's docker transport refuses) is identified by its digest,
 * since the digest is what gets pulled.
 */
export function policyIdentity(ref: ImageReference): string {
  if (ref.digest !== undefined) return `${ref.name}@${ref.digest}`;
  return formatReference(ref);
}

/**
 * Candidate scopes from most to least specific, after the exact identity: repo, parent namespaces,
 * `host[:port]`, then `*.domain` wildcards of the port-stripped host. `host:port` never falls back
 * to bare `host` (upstream behaviour).
 */
export function policyNamespaces(ref: ImageReference): string[] {
  const out: string[] = [];
  let name = ref.name;
  for (;;) {
    out.push(name);
    const slash = name.lastIndexOf('/');
    if (slash === -1) break;
    name = name.slice(0, slash);
  }
  // `name` is now host[:port]. Bracketed IPv6 hosts have colons of their own.
  const portColon = name.startsWith('[') ? name.indexOf(':', name.indexOf(']')) : name.indexOf(':');
  if (portColon !== -1) name = name.slice(0, portColon);
  for (;;) {
    const dot = name.indexOf('.');
    if (dot === -1) break;
    name = name.slice(dot + 1);
    out.push(`*.${name}`);
  }
  return out;
}

export interface ScopedRequirements {
  readonly scope: PolicyScope;
  readonly requirements: readonly PolicyRequirement[];
}

/** The requirements that apply to a docker `reference` (the logical reference the user asked for). */
export function requirementsFor(policy: Policy, reference: ImageReference): ScopedRequirements {
  const docker = policy.transports.get('docker');
  if (docker !== undefined) {
    for (const scope of [policyIdentity(reference), ...policyNamespaces(reference), '']) {
      const requirements = docker.get(scope);
      if (requirements !== undefined) {
        return { scope: { policyFile: policy.source, scope }, requirements };
      }
    }
  }
  return { scope: { policyFile: policy.source, scope: 'default' }, requirements: policy.default };
}
