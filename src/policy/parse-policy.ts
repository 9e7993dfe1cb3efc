/**
 * Strict containers-policy.json(5) parser (c/image policy_config.go semantics): unknown and
 * duplicate keys are errors at every level, `default` is mandatory and non-empty, and every problem
 * is reported at once as `invalid policy in "<file>": <where>: <problem>; …`. Pure.
 */
import { ValidationError } from '../domain/errors.js';
import { parseReference } from '../domain/reference.js';
import { describeJsonValue, isJsonObject, isStrictJsonError, parseStrictJson, type JsonObject, type JsonValue } from '../domain/strict-json.js';
import type { KeySource, PathOrData, Policy, PolicyRequirement, SignedByKeyType, SignedIdentity, SigstoreSignedRequirement } from './types.js';

const SIGNED_BY_KEY_TYPES: readonly SignedByKeyType[] = ['GPGKeys', 'signedByGPGKeys', 'X509Certificates', 'signedByX509CAs'];

/** Collects problems with a JSON-path-like location. */
class Problems {
  readonly list: string[] = [];
  add(where: string, problem: string): void {
    this.list.push(where === '' ? problem : `${where}: ${problem}`);
  }
}

function at(where: string, key: string | number): string {
  if (typeof key === 'number') return `${where}[${key}]`;
  const safe = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  if (where === '') return safe;
  return safe === key ? `${where}.${key}` : `${where}[${safe}]`;
}

/** Reports unknown keys; returns the object, or undefined (with a problem) when it is not one. */
function expectObject(p: Problems, where: string, value: JsonValue, known: readonly string[]): JsonObject | undefined {
  if (!isJsonObject(value)) {
    p.add(where, `JSON object expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  for (const key of value.keys()) {
    if (!known.includes(key)) p.add(where, `Unknown key ${JSON.stringify(key)}`);
  }
  return value;
}

function expectString(p: Problems, where: string, value: JsonValue | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    p.add(where, `string expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  return value;
}

function requiredString(p: Problems, where: string, obj: JsonObject, key: string): string | undefined {
  const value = obj.get(key);
  if (value === undefined) {
    p.add(where, `Key ${JSON.stringify(key)} missing in a JSON object`);
    return undefined;
  }
  return expectString(p, at(where, key), value);
}

/** Absolute path check: relative paths would resolve against the daemon's working directory. */
function expectPath(p: Problems, where: string, value: JsonValue | undefined): string | undefined {
  const path = expectString(p, where, value);
  if (path === undefined) return undefined;
  if (!path.startsWith('/')) {
    p.add(where, `path ${JSON.stringify(path)} must be absolute (relative paths would depend on the daemon's working directory)`);
    return undefined;
  }
  return path;
}

function expectPaths(p: Problems, where: string, value: JsonValue | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    p.add(where, `array expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  const paths: string[] = [];
  (value as readonly JsonValue[]).forEach((item, i) => {
    const path = expectPath(p, at(where, i), item);
    if (path !== undefined) paths.push(path);
  });
  return paths.length === value.length ? paths : undefined;
}

/** Go `[]byte` JSON fields are standard base64 (padding required; \r and \n ignored). */
function expectBase64(p: Problems, where: string, value: JsonValue | undefined): Uint8Array | undefined {
  const text = expectString(p, where, value);
  if (text === undefined) return undefined;
  const compact = text.replace(/[\r\n]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    p.add(where, 'illegal base64 data');
    return undefined;
  }
  return new Uint8Array(Buffer.from(compact, 'base64'));
}

function expectBase64List(p: Problems, where: string, value: JsonValue | undefined): Uint8Array[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    p.add(where, `array expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  const out: Uint8Array[] = [];
  (value as readonly JsonValue[]).forEach((item, i) => {
    const data = expectBase64(p, at(where, i), item);
    if (data !== undefined) out.push(data);
  });
  return out.length === value.length ? out : undefined;
}

/** `prefix`/`signedPrefix` of remapIdentity: a host[:port] or a fully explicit repository name. */
export function isValidIdentityPrefix(prefix: string): boolean {
  if (/^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/.test(prefix)) {
    return true;
  }
  try {
    const ref = parseReference(prefix, { defaultTag: false });
    return ref.tag === undefined && ref.digest === undefined && ref.name === prefix;
  } catch {
    return false;
  }
}

/** An object with a string `type` (requirements and identity rules), or a problem. */
function typedObject(p: Problems, where: string, value: JsonValue): { object: JsonObject; type: string } | undefined {
  if (!isJsonObject(value)) {
    p.add(where, `JSON object expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  const type = value.get('type');
  if (type === undefined) {
    p.add(where, 'Key "type" missing in a JSON object');
    return undefined;
  }
  if (typeof type !== 'string') {
    p.add(at(where, 'type'), `string expected, got ${describeJsonValue(type)}`);
    return undefined;
  }
  return { object: value, type };
}

function parseSignedIdentity(p: Problems, where: string, input: JsonValue): SignedIdentity | undefined {
  const typed = typedObject(p, where, input);
  if (typed === undefined) return undefined;
  const { object: value, type } = typed;
  switch (type) {
    case 'matchExact':
    case 'matchRepoDigestOrExact':
    case 'matchRepository':
      expectObject(p, where, value, ['type']);
      return { type };
    case 'exactReference': {
      expectObject(p, where, value, ['type', 'dockerReference']);
      const ref = requiredString(p, where, value, 'dockerReference');
      if (ref === undefined) return undefined;
      try {
        const parsed = parseReference(ref, { defaultTag: false });
        if (parsed.tag === undefined && parsed.digest === undefined) {
          p.add(at(where, 'dockerReference'), `dockerReference ${ref} contains neither a tag nor digest`);
          return undefined;
        }
      } catch (err) {
        p.add(at(where, 'dockerReference'), `Invalid format of dockerReference ${ref}: ${(err as Error).message}`);
        return undefined;
      }
      return { type, dockerReference: ref };
    }
    case 'exactRepository': {
      expectObject(p, where, value, ['type', 'dockerRepository']);
      const repo = requiredString(p, where, value, 'dockerRepository');
      if (repo === undefined) return undefined;
      try {
        parseReference(repo, { defaultTag: false });
      } catch (err) {
        p.add(at(where, 'dockerRepository'), `Invalid format of dockerRepository ${repo}: ${(err as Error).message}`);
        return undefined;
      }
      return { type, dockerRepository: repo };
    }
    case 'remapIdentity': {
      expectObject(p, where, value, ['type', 'prefix', 'signedPrefix']);
      const prefix = requiredString(p, where, value, 'prefix');
      const signedPrefix = requiredString(p, where, value, 'signedPrefix');
      let ok = prefix !== undefined && signedPrefix !== undefined;
      for (const [key, v] of [
        ['prefix', prefix],
        ['signedPrefix', signedPrefix],
      ] as const) {
        if (v !== undefined && !isValidIdentityPrefix(v)) {
          p.add(at(where, key), `prefix ${JSON.stringify(v)} is not valid`);
          ok = false;
        }
      }
      return ok ? { type, prefix: prefix as string, signedPrefix: signedPrefix as string } : undefined;
    }
    default:
      p.add(at(where, 'type'), `Unknown policy reference match type ${JSON.stringify(type)}`);
      return undefined;
  }
}

function optionalIdentity(p: Problems, where: string, obj: JsonObject, key: string): SignedIdentity | undefined {
  const value = obj.get(key);
  if (value === undefined) return { type: 'matchRepoDigestOrExact' };
  return parseSignedIdentity(p, at(where, key), value);
}

/** One of several mutually exclusive key sources; `what` is used in the upstream error text. */
function exactlyOneKeySource(
  p: Problems,
  where: string,
  obj: JsonObject,
  kinds: readonly ('keyPath' | 'keyPaths' | 'keyData' | 'keyDatas')[],
  noneText: string,
  manyText: string,
): KeySource | undefined | 'none' {
  const present = kinds.filter((k) => obj.has(k));
  if (present.length === 0) return 'none';
  if (present.length > 1) {
    p.add(where, manyText);
    return undefined;
  }
  void noneText;
  const key = present[0] as (typeof kinds)[number];
  const w = at(where, key);
  switch (key) {
    case 'keyPath': {
      const path = expectPath(p, w, obj.get(key));
      if (path === '') p.add(w, noneText);
      return path === undefined ? undefined : { kind: 'path', path };
    }
    case 'keyPaths': {
      const paths = expectPaths(p, w, obj.get(key));
      return paths === undefined ? undefined : { kind: 'paths', paths };
    }
    case 'keyData': {
      const data = expectBase64(p, w, obj.get(key));
      return data === undefined ? undefined : { kind: 'data', data };
    }
    case 'keyDatas': {
      const datas = expectBase64List(p, w, obj.get(key));
      return datas === undefined ? undefined : { kind: 'datas', datas };
    }
  }
}

function pathOrData(p: Problems, where: string, obj: JsonObject, pathKey: string, dataKey: string, required: boolean): PathOrData | undefined | 'invalid' {
  const hasPath = obj.has(pathKey);
  const hasData = obj.has(dataKey);
  if (hasPath && hasData) {
    p.add(where, `${pathKey} and ${dataKey} cannot be both specified`);
    return 'invalid';
  }
  if (!hasPath && !hasData) {
    if (required) {
      p.add(where, `exactly one of ${pathKey} and ${dataKey} must be specified`);
      return 'invalid';
    }
    return undefined;
  }
  if (hasPath) {
    const path = expectPath(p, at(where, pathKey), obj.get(pathKey));
    return path === undefined ? 'invalid' : { kind: 'path', path };
  }
  const data = expectBase64(p, at(where, dataKey), obj.get(dataKey));
  return data === undefined ? 'invalid' : { kind: 'data', data };
}

const SIGSTORE_KEYS = [
  'type',
  'keyPath',
  'keyPaths',
  'keyData',
  'keyDatas',
  'fulcio',
  'pki',
  'rekorPublicKeyPath',
  'rekorPublicKeyPaths',
  'rekorPublicKeyData',
  'rekorPublicKeyDatas',
  'signedIdentity',
] as const;

function parseSigstoreSigned(p: Problems, where: string, obj: JsonObject): SigstoreSignedRequirement | undefined {
  expectObject(p, where, obj, SIGSTORE_KEYS);
  const errorsBefore = p.list.length;
  const trustKeys = ['keyPath', 'keyPaths', 'keyData', 'keyDatas', 'fulcio', 'pki'].filter((k) => obj.has(k));
  if (trustKeys.length !== 1) {
    p.add(where, 'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified');
  }
  let trust: SigstoreSignedRequirement['trust'] | undefined;
  if (trustKeys.length === 1) {
    const only = trustKeys[0] as string;
    if (only === 'fulcio') {
      const w = at(where, 'fulcio');
      const f = expectObject(p, w, obj.get('fulcio') as JsonValue, ['caPath', 'caData', 'oidcIssuer', 'subjectEmail']);
      if (f !== undefined) {
        const ca = pathOrData(p, w, f, 'caPath', 'caData', true);
        const oidcIssuer = expectString(p, at(w, 'oidcIssuer'), f.get('oidcIssuer'));
        const subjectEmail = expectString(p, at(w, 'subjectEmail'), f.get('subjectEmail'));
        if (!f.has('oidcIssuer') || oidcIssuer === '') p.add(w, 'oidcIssuer not specified');
        if (!f.has('subjectEmail') || subjectEmail === '') p.add(w, 'subjectEmail not specified');
        if (ca !== undefined && ca !== 'invalid' && oidcIssuer && subjectEmail) {
          trust = { kind: 'fulcio', fulcio: { ca, oidcIssuer, subjectEmail } };
        }
      }
    } else if (only === 'pki') {
      const w = at(where, 'pki');
      const k = expectObject(p, w, obj.get('pki') as JsonValue, [
        'caRootsPath',
        'caRootsData',
        'caIntermediatesPath',
        'caIntermediatesData',
        'subjectEmail',
        'subjectHostname',
      ]);
      if (k !== undefined) {
        const caRoots = pathOrData(p, w, k, 'caRootsPath', 'caRootsData', true);
        const caIntermediates = pathOrData(p, w, k, 'caIntermediatesPath', 'caIntermediatesData', false);
        const subjectEmail = expectString(p, at(w, 'subjectEmail'), k.get('subjectEmail'));
        const subjectHostname = expectString(p, at(w, 'subjectHostname'), k.get('subjectHostname'));
        if (!subjectEmail && !subjectHostname) p.add(w, 'at least one of subjectEmail and subjectHostname must be specified');
        if (caRoots !== undefined && caRoots !== 'invalid' && caIntermediates !== 'invalid' && (subjectEmail || subjectHostname)) {
          trust = {
            kind: 'pki',
            pki: {
              caRoots,
              ...(caIntermediates !== undefined ? { caIntermediates } : {}),
              ...(subjectEmail ? { subjectEmail } : {}),
              ...(subjectHostname ? { subjectHostname } : {}),
            },
          };
        }
      }
    } else {
      const keys = exactlyOneKeySource(p, where, obj, ['keyPath', 'keyPaths', 'keyData', 'keyDatas'], 'keyPath must not be empty', '');
      if (keys !== undefined && keys !== 'none') {
        if (keys.kind === 'paths' && keys.paths.length === 0) p.add(at(where, 'keyPaths'), '"keyPaths" contains no entries');
        else if (keys.kind === 'datas' && keys.datas.length === 0) p.add(at(where, 'keyDatas'), '"keyDatas" contains no entries');
        else trust = { kind: 'keys', keys };
      }
    }
  }

  const rekorKinds = ['rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas'] as const;
  const rekorPresent = rekorKinds.filter((k) => obj.has(k));
  let rekorPublicKeys: KeySource | undefined;
  if (rekorPresent.length > 1) {
    p.add(where, 'at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas may be specified');
  } else if (rekorPresent.length === 1) {
    const key = rekorPresent[0] as (typeof rekorKinds)[number];
    const w = at(where, key);
    const v = obj.get(key);
    if (key === 'rekorPublicKeyPath') {
      const path = expectPath(p, w, v);
      if (path !== undefined) rekorPublicKeys = { kind: 'path', path };
    } else if (key === 'rekorPublicKeyPaths') {
      const paths = expectPaths(p, w, v);
      // Upstream's casing, as in its other rekor texts.
      if (paths?.length === 0) p.add(w, '"rekorPublickeyPaths" contains no entries');
      else if (paths !== undefined) rekorPublicKeys = { kind: 'paths', paths };
    } else if (key === 'rekorPublicKeyData') {
      const data = expectBase64(p, w, v);
      if (data !== undefined) rekorPublicKeys = { kind: 'data', data };
    } else {
      const datas = expectBase64List(p, w, v);
      if (datas?.length === 0) p.add(w, '"rekorPublickeyDatas" contains no entries');
      else if (datas !== undefined) rekorPublicKeys = { kind: 'datas', datas };
    }
  }
  if (trustKeys.length === 1 && trustKeys[0] === 'fulcio' && rekorPresent.length === 0) {
    // Upstream's casing typo ("rekorPublickey…") is kept on purpose: operators grep for it.
    p.add(where, 'At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used');
  }
  if (trustKeys.length === 1 && trustKeys[0] === 'pki' && rekorPresent.length > 0) {
    p.add(where, 'rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas are not supported for pki');
  }
  const signedIdentity = optionalIdentity(p, where, obj, 'signedIdentity');
  if (p.list.length !== errorsBefore || trust === undefined || signedIdentity === undefined) return undefined;
  return {
    type: 'sigstoreSigned',
    trust,
    ...(rekorPublicKeys !== undefined ? { rekorPublicKeys } : {}),
    signedIdentity,
  };
}

function parseRequirement(p: Problems, where: string, input: JsonValue): PolicyRequirement | undefined {
  const typed = typedObject(p, where, input);
  if (typed === undefined) return undefined;
  const { object: value, type } = typed;
  switch (type) {
    case 'insecureAcceptAnything':
    case 'reject':
      return expectObject(p, where, value, ['type']) === undefined ? undefined : { type };
    case 'signedBy': {
      const before = p.list.length;
      expectObject(p, where, value, ['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity']);
      const keyTypeValue = value.get('keyType');
      let keyType: SignedByKeyType | undefined;
      if (keyTypeValue === undefined) {
        p.add(where, 'invalid keyType ""');
      } else if (typeof keyTypeValue !== 'string' || !SIGNED_BY_KEY_TYPES.includes(keyTypeValue as SignedByKeyType)) {
        p.add(
          at(where, 'keyType'),
          `Unrecognized keyType value ${typeof keyTypeValue === 'string' ? JSON.stringify(keyTypeValue) : describeJsonValue(keyTypeValue)}`,
        );
      } else {
        keyType = keyTypeValue as SignedByKeyType;
      }
      const keys = exactlyOneKeySource(
        p,
        where,
        value,
        ['keyPath', 'keyPaths', 'keyData'],
        'exactly one of keyPath, keyPaths and keyData must be specified',
        'Exactly one of keyPath, keyPaths and keyData must be specified, more than one present',
      );
      if (keys === 'none') p.add(where, 'Exactly one of keyPath, keyPaths and keyData must be specified, none of them present');
      const signedIdentity = optionalIdentity(p, where, value, 'signedIdentity');
      if (p.list.length !== before || keyType === undefined || keys === undefined || keys === 'none' || signedIdentity === undefined) {
        return undefined;
      }
      return { type, keyType, keys: keys as Extract<KeySource, { kind: 'path' | 'paths' | 'data' }>, signedIdentity };
    }
    case 'signedBaseLayer': {
      expectObject(p, where, value, ['type', 'baseLayerIdentity']);
      const identity = value.get('baseLayerIdentity');
      if (identity === undefined) {
        p.add(where, 'Key "baseLayerIdentity" missing in a JSON object');
        return undefined;
      }
      const baseLayerIdentity = parseSignedIdentity(p, at(where, 'baseLayerIdentity'), identity);
      return baseLayerIdentity === undefined ? undefined : { type, baseLayerIdentity };
    }
    case 'sigstoreSigned':
      return parseSigstoreSigned(p, where, value);
    default:
      p.add(at(where, 'type'), `Unknown policy requirement type ${JSON.stringify(type)}`);
      return undefined;
  }
}

function parseRequirements(p: Problems, where: string, value: JsonValue): readonly PolicyRequirement[] | undefined {
  if (!Array.isArray(value)) {
    p.add(where, `array expected, got ${describeJsonValue(value)}`);
    return undefined;
  }
  const list = value as readonly JsonValue[];
  if (list.length === 0) {
    p.add(where, 'List of verification policy requirements must not be empty');
    return undefined;
  }
  const out: PolicyRequirement[] = [];
  list.forEach((item, i) => {
    const req = parseRequirement(p, at(where, i), item);
    if (req !== undefined) out.push(deepFreeze(req));
  });
  return out.length === list.length ? Object.freeze(out) : undefined;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value) && !(value instanceof Uint8Array)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Parses policy.json text. `source` is the file name used in messages (`<embedded>` for built-ins).
 * Throws ValidationError('INVALID_POLICY') listing every problem.
 */
export function parsePolicy(text: string, options: { readonly source: string }): Policy {
  const subject = `invalid policy in ${JSON.stringify(options.source)}`;
  const duplicates: string[] = [];
  let doc: JsonValue;
  try {
    doc = parseStrictJson(text, { duplicates });
  } catch (err) {
    if (isStrictJsonError(err)) throw new ValidationError('INVALID_POLICY', subject, [err.message], { cause: err });
    throw err;
  }
  const p = new Problems();
  for (const key of duplicates) p.add('', `Duplicate key ${JSON.stringify(key)}`);

  const top = expectObject(p, '', doc, ['default', 'transports']);
  let defaults: readonly PolicyRequirement[] | undefined;
  const transports = new Map<string, ReadonlyMap<string, readonly PolicyRequirement[]>>();
  if (top !== undefined) {
    const def = top.get('default');
    if (def === undefined) p.add('', 'Default policy is missing');
    else defaults = parseRequirements(p, 'default', def);

    const tr = top.get('transports');
    if (tr !== undefined) {
      if (!isJsonObject(tr)) {
        p.add('transports', `JSON object expected, got ${describeJsonValue(tr)}`);
      } else {
        for (const [transport, scopes] of tr) {
          const where = at('transports', transport);
          if (!isJsonObject(scopes)) {
            p.add(where, `JSON object expected, got ${describeJsonValue(scopes)}`);
            continue;
          }
          const scopeMap = new Map<string, readonly PolicyRequirement[]>();
          for (const [scope, reqs] of scopes) {
            const parsed = parseRequirements(p, at(where, scope), reqs);
            if (parsed !== undefined) scopeMap.set(scope, parsed);
          }
          transports.set(transport, scopeMap);
        }
      }
    }
  }
  if (p.list.length > 0 || defaults === undefined) {
    throw new ValidationError('INVALID_POLICY', subject, p.list.length > 0 ? p.list : ['Default policy is missing']);
  }
  return Object.freeze({ source: options.source, default: defaults, transports });
}
