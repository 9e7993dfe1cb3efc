/**
 * Runs the real registry (`/usr/bin/docker-registry`, distribution 2.8) on a free loopback port with
 * filesystem storage in a temp dir, and pushes OCI layouts into it with the real skopeo.
 *
 *   const reg = await startRegistry();                                   // anonymous, plain HTTP
 *   const reg = await startRegistry({ auth: 'htpasswd', users: { alice: 's3cret' } });
 *   const reg = await startRegistry({ tokenAuth: { users: { bob: 'pw' } } }); // real Bearer token flow
 *   await pushImage(layoutDir, 'app:v1', reg, { format: 'oci' | 'v2s2', creds: { username, password } });
 *   await pushIndex(layoutDir, 'multi:v1', reg);                        // skopeo copy --all
 *   reg.host  // '127.0.0.1:PORT'   reg.url // 'http://127.0.0.1:PORT'
 *   await reg.stop();                                                    // also killed on process exit
 *
 * tokenAuth starts a loopback token server that issues RS256 JWTs with an `x5c` header, signed by a
 * self-signed certificate made with openssl and given to the registry as `rootcertbundle`; the registry
 * answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` exactly as in production.
 * `reg.token.requests` records what the token server saw (method, query, whether Basic was sent).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch } from 'undici';

const execFileAsync = promisify(execFile);

/**
 * openssl for certificates that the registry (Go, which reads the real clock even under libfaketime)
 * and pullguard (which may run a year ahead under faketime) must both accept: made at the real time
 * and valid for 1000 days, a window that holds both clocks.
 */
function opensslCert(args: readonly string[]): Promise<unknown> {
  return execFileAsync('openssl', [...args, '-days', '1000'], { env: { ...process.env, LD_PRELOAD: '' } });
}

export interface TokenRequestRecord {
  readonly method: string;
  readonly service: string | null;
  readonly scopes: readonly string[];
  readonly basicUser: string | null;
  readonly grantType: string | null;
  readonly refreshToken: string | null;
}

export interface TokenServer {
  realm: string;
  readonly service: string;
  readonly requests: TokenRequestRecord[];
  /** Refresh tokens accepted by the oauth2 POST flow (refresh_token → user). */
  readonly refreshTokens: Map<string, string>;
  /** Seconds; default 300. Set before a request to change later tokens' lifetime. */
  expiresIn: number;
  /** Reply with `access_token` instead of `token` when true. */
  useAccessTokenField: boolean;
}

export interface StartedRegistry {
  readonly host: string;
  readonly url: string;
  /** With `tls`: the CA that issued the registry's certificate (PEM). */
  readonly caCertPath?: string;
  readonly dataDir: string;
  readonly token?: TokenServer;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  readonly auth?: 'htpasswd';
  /** Users for htpasswd or token auth: name → password. */
  readonly users?: Readonly<Record<string, string>>;
  readonly tokenAuth?: {
    readonly users: Readonly<Record<string, string>>;
    /** Users allowed only pull (everyone else with a valid password gets pull+push). */
    readonly pullOnly?: readonly string[];
    /** Allow anonymous pulls (no Basic on the token request). Default false. */
    readonly anonymousPull?: boolean;
  };
  /** Reuse another registry's storage (e.g. serve the same images with auth). */
  readonly dataDir?: string;
  /** Serve HTTPS with a certificate for 127.0.0.1 issued by a throwaway CA (`caCertPath`). */
  readonly tls?: boolean;
}

export interface PushOptions {
  readonly format?: 'oci' | 'v2s2';
  readonly creds?: { readonly username: string; readonly password: string };
}

const children = new Set<ChildProcess>();
/** Temp dirs of registries not stopped yet: removed at exit too, so a crashed test leaves none behind. */
const liveDirs = new Set<string>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForV2(url: string, child: ChildProcess, stderr: () => string, caCertPath?: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  const dispatcher = caCertPath !== undefined ? new Agent({ connect: { ca: await readFile(caCertPath, 'utf8') } }) : undefined;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await undiciFetch(`${url}/v2/`, dispatcher !== undefined ? { dispatcher } : {});
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) {
        await dispatcher?.close();
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer /v2/ within 15 s: ${stderr()}`);
}

/** A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl). */
async function issueServerCertificate(dir: string): Promise<{ caCertPath: string; certPath: string; keyPath: string }> {
  const caKey = join(dir, 'ca.key');
  const caCertPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const certPath = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  await opensslCert([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caCertPath,
    '-subj',
    '/CN=pullguard test CA',
  ]);
  await execFileAsync('openssl', [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    csr,
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await opensslCert(['x509', '-req', '-in', csr, '-CA', caCertPath, '-CAkey', caKey, '-CAcreateserial', '-out', certPath, '-extfile', ext]);
  return { caCertPath, certPath, keyPath };
}

async function htpasswdFile(dir: string, users: Readonly<Record<string, string>>): Promise<string> {
  const lines: string[] = [];
  for (const [user, password] of Object.entries(users)) {
    // bcrypt cost 4 keeps registry-side verification fast in tests.
    const { stdout } = await execFileAsync('htpasswd', ['-nbB', '-C', '4', user, password]);
    lines.push(stdout.trim());
  }
  const path = join(dir, 'htpasswd');
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

async function startTokenServer(
  dir: string,
  options: NonNullable<StartRegistryOptions['tokenAuth']>,
): Promise<{ server: Server; token: TokenServer; certPath: string; issuer: string }> {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  await opensslCert(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', '/CN=pullguard-test-token-issuer']);
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw;
  const issuer = 'pullguard-test-issuer';
  const service = 'pullguard-test-registry';
  const requests: TokenRequestRecord[] = [];
  const token: TokenServer = { realm: '', service, requests, refreshTokens: new Map(), expiresIn: 300, useAccessTokenField: false };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const form = req.method === 'POST' ? new URLSearchParams(Buffer.concat(chunks).toString()) : url.searchParams;
      const scopes = form
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter((s) => s.length > 0);
      let user: string | null = null;
      let basicUser: string | null = null;
      const authz = req.headers.authorization;
      if (authz?.startsWith('Basic ')) {
        const decoded = Buffer.from(authz.slice(6), 'base64').toString();
        const colon = decoded.indexOf(':');
        basicUser = decoded.slice(0, colon);
        if (options.users[basicUser] !== decoded.slice(colon + 1)) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
          requests.push({ method: req.method ?? '', service: form.get('service'), scopes, basicUser, grantType: null, refreshToken: null });
          return;
        }
        user = basicUser;
      }
      const grantType = form.get('grant_type');
      const refreshToken = form.get('refresh_token');
      if (req.method === 'POST' && grantType === 'refresh_token') {
        user = refreshToken !== null ? (token.refreshTokens.get(refreshToken) ?? null) : null;
        if (user === null) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_grant"}');
          requests.push({ method: 'POST', service: form.get('service'), scopes, basicUser, grantType, refreshToken: '<given>' });
          return;
        }
      }
      requests.push({
        method: req.method ?? '',
        service: form.get('service'),
        scopes,
        basicUser,
        grantType,
        refreshToken: refreshToken === null ? null : '<given>',
      });
      if (user === null && options.anonymousPull !== true) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      const access = scopes.flatMap((scope) => {
        const [type, name, actions] = scope.split(':');
        if (type !== 'repository' || name === undefined || actions === undefined) return [];
        const pullOnly = user === null || options.pullOnly?.includes(user) === true;
        const granted = actions.split(',').filter((a) => a === 'pull' || (!pullOnly && (a === 'push' || a === '*')));
        return granted.length > 0 ? [{ type, name, actions: granted }] : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
      // No nbf: the registry checks it against the real clock, which may be a year behind this one
      // (tests under faketime); exp only moves further into the registry's future.
      const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + token.expiresIn, iat: now, jti: randomUUID(), access };
      const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const signature = sign('RSA-SHA256', Buffer.from(signingInput), key);
      const jwt = `${signingInput}.${b64url(signature)}`;
      const body = token.useAccessTokenField
        ? { access_token: jwt, expires_in: token.expiresIn, issued_at: new Date().toISOString() }
        : { token: jwt, expires_in: token.expiresIn, issued_at: new Date().toISOString() };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  token.realm = `http://127.0.0.1:${port}/token`;
  return { server, token, certPath, issuer };
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<StartedRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-registry-'));
  liveDirs.add(dir);
  const dataDir = options.dataDir ?? join(dir, 'data');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let authYaml = '';
  let tokenServer: Server | undefined;
  let token: TokenServer | undefined;
  if (options.auth === 'htpasswd') {
    const path = await htpasswdFile(dir, options.users ?? {});
    authYaml = `auth:\n  htpasswd:\n    realm: pullguard-test\n    path: ${path}\n`;
  } else if (options.tokenAuth !== undefined) {
    const started = await startTokenServer(dir, options.tokenAuth);
    tokenServer = started.server;
    token = started.token;
    authYaml = `auth:\n  token:\n    realm: ${token.realm}\n    service: ${token.service}\n    issuer: ${started.issuer}\n    rootcertbundle: ${started.certPath}\n`;
  }
  const tls = options.tls === true ? await issueServerCertificate(dir) : undefined;
  const tlsYaml = tls !== undefined ? `  tls:\n    certificate: ${tls.certPath}\n    key: ${tls.keyPath}\n` : '';
  const configPath = join(dir, 'config.yml');
  await writeFile(
    configPath,
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dataDir}\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n  secret: ${createHash('sha256').update(dir).digest('hex')}\n${tlsYaml}${authYaml}`,
  );
  const child = spawn('/usr/bin/docker-registry', ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const url = `${tls !== undefined ? 'https' : 'http'}://${host}`;
  try {
    await waitForV2(url, child, () => stderr, tls?.caCertPath);
  } catch (err) {
    child.kill('SIGKILL');
    children.delete(child);
    tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw err;
  }
  return {
    host,
    url,
    dataDir,
    ...(tls !== undefined ? { caCertPath: tls.caCertPath } : {}),
    ...(token !== undefined ? { token } : {}),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      children.delete(child);
      if (tokenServer !== undefined) await new Promise((r) => tokenServer.close(r));
      // With options.dataDir the images live elsewhere: dir holds only config, htpasswd, keys and certs.
      await rm(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
  };
}

function pushCreds(options: PushOptions): string[] {
  const creds = options.creds;
  return creds === undefined ? [] : ['--dest-creds', `${creds.username}:${creds.password}`];
}

async function skopeoCopy(src: string, dest: string, extra: string[]): Promise<void> {
  try {
    await execFileAsync('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', ...extra, src, dest], { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo copy ${src} → ${dest} failed: ${e.stderr ?? e.message}`);
  }
}

/**
 * Pushes the image tagged `tag` in the OCI layout (default: the tag part of `repoAndTag`) to
 * `registry` as `repoAndTag`. `format: 'v2s2'` converts to Docker schema2 on the way; `all` pushes
 * every instance of a multi-platform index.
 */
export async function pushImage(
  layoutDir: string,
  repoAndTag: string,
  registry: StartedRegistry,
  options: PushOptions & { readonly layoutTag?: string; readonly all?: boolean } = {},
): Promise<void> {
  const layoutTag = options.layoutTag ?? repoAndTag.slice(repoAndTag.lastIndexOf(':') + 1);
  const format = options.format === 'v2s2' ? ['--format', 'v2s2'] : options.format === 'oci' ? ['--format', 'oci'] : [];
  await skopeoCopy(`oci:${layoutDir}:${layoutTag}`, `docker://${registry.host}/${repoAndTag}`, [
    ...(options.all ? ['--all'] : []),
    ...format,
    ...pushCreds(options),
  ]);
}

/** Pushes a multi-platform index (all instances) from the layout. */
export function pushIndex(
  layoutDir: string,
  repoAndTag: string,
  registry: StartedRegistry,
  options: PushOptions & { readonly layoutTag?: string } = {},
): Promise<void> {
  return pushImage(layoutDir, repoAndTag, registry, { ...options, all: true });
}
