/**
 * The node's PKI, made with openssl in the harness's temp dir: a CA, kube-apiserver's serving
 * certificate for 127.0.0.1, client certificates for the harness (system:masters) and the kubelet
 * (system:node:<node>, for the Node authorizer), and the service-account signing key pair.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface NodePki {
  readonly dir: string;
  readonly caCert: string;
  readonly apiserverCert: string;
  readonly apiserverKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly kubeletCert: string;
  readonly kubeletKey: string;
  readonly serviceAccountKey: string;
  readonly serviceAccountPub: string;
}

/** openssl at the real time (libfaketime would make certificates the Go programs see as not yet valid). */
function openssl(args: readonly string[]): Promise<unknown> {
  return execFileAsync('openssl', [...args], { env: { ...process.env, LD_PRELOAD: '' } });
}

async function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  ca: { cert: string; key: string },
): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
  await writeFile(ext, extensions);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '1000', '-extfile', ext]);
  return { cert, key };
}

export async function makeNodePki(dir: string, nodeName: string): Promise<NodePki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
    '-subj',
    '/CN=pullguard-node-ca',
    '-days',
    '1000',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  const client = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
  const [apiserver, admin, kubelet] = await Promise.all([
    issue(
      dir,
      'apiserver',
      '/CN=kube-apiserver',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n',
      ca,
    ),
    issue(dir, 'admin', '/O=system:masters/CN=pullguard-node-admin', client, ca),
    issue(dir, 'kubelet', `/O=system:nodes/CN=system:node:${nodeName}`, client, ca),
  ]);
  const serviceAccountKey = join(dir, 'sa.key');
  const serviceAccountPub = join(dir, 'sa.pub');
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', serviceAccountKey]);
  await openssl(['pkey', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPub]);
  return {
    dir,
    caCert: ca.cert,
    apiserverCert: apiserver.cert,
    apiserverKey: apiserver.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    kubeletCert: kubelet.cert,
    kubeletKey: kubelet.key,
    serviceAccountKey,
    serviceAccountPub,
  };
}

/** A kubeconfig file for one user: a client certificate or a bearer token. */
export function kubeconfigYaml(server: string, caCert: string, user: { name: string; certFile?: string; keyFile?: string; token?: string }): string {
  const credentials =
    user.token !== undefined ? `    token: ${user.token}\n` : `    client-certificate: ${user.certFile ?? ''}\n    client-key: ${user.keyFile ?? ''}\n`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: node',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority: ${caCert}`,
    'users:',
    `- name: ${user.name}`,
    '  user:',
    credentials.trimEnd(),
    'contexts:',
    `- name: ${user.name}`,
    '  context:',
    '    cluster: node',
    `    user: ${user.name}`,
    `current-context: ${user.name}`,
    '',
  ].join('\n');
}
