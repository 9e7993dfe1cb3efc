/**
 * Docker image references, parsed and normalised the way containers/image (docker/reference) and
 * kubelet do: `nginx` → `docker.io/library/nginx:latest`. Pure; throws INVALID_REFERENCE.
 */
import { parseDigest, type Digest } from './digest.js';
import { PullguardError } from './errors.js';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
const NAME_TOTAL_LENGTH_MAX = 255;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

export interface ImageReference {
  /** Registry host[:port], e.g. `docker.io`, `127.0.0.1:5000`. */
  readonly domain: string;
  /** Repository path without the host, e.g. `library/nginx`. */
  readonly path: string;
  /** `domain/path`. */
  readonly name: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

function invalid(input: string, why: string): PullguardError<'INVALID_REFERENCE'> {
  return new PullguardError('INVALID_REFERENCE', `invalid image reference ${JSON.stringify(input)}: ${why}`);
}

/** Splits `remote` into domain and path the way docker/reference's splitDockerDomain does. */
function splitDomain(remote: string): { domain: string; path: string } {
  const slash = remote.indexOf('/');
  const first = slash === -1 ? '' : remote.slice(0, slash);
  let domain: string;
  let path: string;
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    path = remote;
  } else {
    domain = first;
    path = remote.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  return { domain, path };
}

const PORT_RE = /^[1-9][0-9]{0,4}$/;

/**
 * Why `host[:port]` is not the one spelling of its registry, or undefined when it is. Policy scopes
 * and registries.d entries match references as text (as in containers/image), while the HTTP stack
 * reads `127.1`, `2130706433`, `0x7f.0.0.1`, `:05200` or `[::ffff:127.0.0.1]` as the same address
 * and port as `127.0.0.1:5200`: such spellings would step around a scope, so they are refused.
 */
function nonCanonicalHost(domain: string): string | undefined {
  const portAt = domain.startsWith('[') ? domain.indexOf(']:') + 1 : domain.lastIndexOf(':');
  const host = portAt > 0 ? domain.slice(0, portAt) : domain;
  const port = portAt > 0 ? domain.slice(portAt + 1) : undefined;
  if (port !== undefined && (!PORT_RE.test(port) || Number(port) > 65535)) {
    return `registry port ${JSON.stringify(port)} is not written canonically (1-65535, no leading zeros)`;
  }
  let parsed: string;
  try {
    parsed = new URL(`http://${host}/`).hostname;
  } catch {
    return `invalid registry host ${JSON.stringify(host)}`;
  }
  if (/^\[::ffff:/i.test(parsed) || /^\[::[0-9a-f]{1,4}:[0-9a-f]{1,4}\]$/i.test(parsed)) {
    return `registry host ${JSON.stringify(host)} is an IPv4 address written as IPv6; write it as IPv4`;
  }
  if (parsed !== host) {
    return `registry host ${JSON.stringify(host)} is not written canonically (the network reads it as ${JSON.stringify(parsed)}; write that)`;
  }
  return undefined;
}

/**
 * Parses and normalises a reference. With `defaultTag` (the default), a reference with neither tag
 * nor digest gets `:latest`, as kubelet does before asking the runtime.
 */
export function parseReference(input: string, options: { defaultTag?: boolean } = {}): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input), 'empty');
  // Length first: the other messages quote the input, which must stay bounded.
  if (input.length > 4096) throw invalid(`${input.slice(0, 64)}…`, 'too long');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this refuses.
  if (/[\0-\x1f\x7f\s]/.test(input)) throw invalid(input, 'contains whitespace or control characters');

  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch (err) {
      throw new PullguardError('INVALID_REFERENCE', `invalid image reference ${JSON.stringify(input)}: ${(err as Error).message}`, { cause: err });
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw invalid(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest.length === 0) throw invalid(input, 'missing repository name');

  const { domain, path } = splitDomain(rest);
  if (!DOMAIN_RE.test(domain)) throw invalid(input, `invalid registry host ${JSON.stringify(domain)}`);
  const spelling = nonCanonicalHost(domain);
  if (spelling !== undefined) throw invalid(input, spelling);
  const components = path.split('/');
  for (const component of components) {
    if (component.toLowerCase() !== component && PATH_COMPONENT_RE.test(component.toLowerCase())) {
      throw invalid(input, 'repository name must be lowercase');
    }
    if (!PATH_COMPONENT_RE.test(component)) {
      throw invalid(input, `invalid repository path component ${JSON.stringify(component)}`);
    }
  }
  const name = `${domain}/${path}`;
  if (name.length > NAME_TOTAL_LENGTH_MAX) throw invalid(input, `repository name longer than ${NAME_TOTAL_LENGTH_MAX} characters`);

  if (tag === undefined && digest === undefined && options.defaultTag !== false) tag = DEFAULT_TAG;
  return Object.freeze({ domain, path, name, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) });
}

/** `name:tag`, `name@digest` or `name:tag@digest`. */
export function formatReference(ref: ImageReference): string {
  return `${ref.name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The same repository, pinned to `digest` (tag dropped), as a runtime would be asked to pull it. */
export function withDigest(ref: ImageReference, digest: Digest): ImageReference {
  return Object.freeze({ domain: ref.domain, path: ref.path, name: ref.name, digest });
}

/** A reference with no tag or digest (a repository), as policy and registries.d scopes use. */
export function repositoryOf(ref: ImageReference): ImageReference {
  return Object.freeze({ domain: ref.domain, path: ref.path, name: ref.name });
}
