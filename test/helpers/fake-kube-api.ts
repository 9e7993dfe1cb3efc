/**
 * A fake Kubernetes API server for the event recorder's tests: just the core/v1 Event endpoints
 * @kubernetes/client-node calls, answering with the shapes a real API server sends (the stored
 * object with uid/resourceVersion/creationTimestamp, or a metav1 Status on failure). Plain HTTP on
 * 127.0.0.1:0; it writes a kubeconfig pointing at itself with a bearer token and checks the token on
 * every request (401 Status otherwise).
 *
 *   const api = await startFakeKubeApi();
 *   api.kubeconfigPath                       // token auth, server http://127.0.0.1:PORT
 *   api.token                                // what the kubeconfig carries
 *   api.requests                             // method, path, contentType, authorization, body
 *   api.events                               // stored Events by `<ns>/<name>`
 *   api.failWith(403)                        // every request answers that Status until failWith(undefined)
 *   api.stall(2000)                          // hold each answer this long (stall(undefined) to stop)
 *   api.deleteAll()                          // as if the events expired (their TTL is 1 h)
 *   await api.stop();
 *
 * PATCH accepts the three patch types the API server takes for built-in kinds: strategic-merge and
 * merge (a JSON object merged in; enough for scalar fields) and json-patch (add/replace/remove/test
 * on top-level paths); anything else answers 415 like the real server.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly authorization: string | undefined;
  readonly body: unknown;
}

type StoredEvent = Record<string, unknown> & { metadata: Record<string, unknown> };

export interface FakeKubeApi {
  readonly url: string;
  readonly token: string;
  readonly kubeconfigPath: string;
  readonly requests: RecordedRequest[];
  readonly events: Map<string, StoredEvent>;
  failWith(status: 401 | 403 | 404 | 409 | 422 | 500 | 503 | undefined): void;
  stall(ms: number | undefined): void;
  deleteAll(): void;
  stop(): Promise<void>;
}

const STATUS_REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'AlreadyExists',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

function status(code: number, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: STATUS_REASONS[code] ?? 'Unknown',
    ...(details ? { details } : {}),
    code,
  };
}

function send(response: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'audit-id': randomUUID() });
  response.end(text);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 3 * 1024 * 1024) throw new Error('request body too large'); // the real limit is 3 MiB
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function applyJsonPatch(target: StoredEvent, operations: unknown): StoredEvent | string {
  if (!Array.isArray(operations)) return 'json patch must be an array';
  const copy: Record<string, unknown> = structuredClone(target);
  for (const op of operations as { op?: string; path?: string; value?: unknown }[]) {
    const key = /^\/([^/]+)$/.exec(op.path ?? '')?.[1];
    if (key === undefined) return `unsupported path ${String(op.path)}`;
    if (op.op === 'add' || (op.op === 'replace' && key in copy)) copy[key] = op.value;
    else if (op.op === 'remove' && key in copy) delete copy[key];
    else if (op.op === 'test') {
      if (JSON.stringify(copy[key]) !== JSON.stringify(op.value)) return `test failed for ${key}`;
    } else return `cannot ${String(op.op)} ${key}`;
  }
  return copy as StoredEvent;
}

export async function startFakeKubeApi(): Promise<FakeKubeApi> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-kube-'));
  const token = `fake-token-${randomBytes(16).toString('hex')}`;
  const requests: RecordedRequest[] = [];
  const events = new Map<string, StoredEvent>();
  let failure: number | undefined;
  let stallMs: number | undefined;
  let resourceVersion = 1000;

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const raw = await readBody(request);
    const contentType = request.headers['content-type']?.split(';')[0]?.trim();
    let body: unknown;
    try {
      body = raw === '' ? undefined : JSON.parse(raw);
    } catch {
      body = raw;
    }
    const url = new URL(request.url ?? '/', 'http://localhost');
    requests.push({ method: request.method ?? '', path: url.pathname, contentType, authorization: request.headers.authorization, body });
    if (stallMs !== undefined) {
      const ms = stallMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        response.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (response.destroyed) return;
    }

    if (request.headers.authorization !== `Bearer ${token}`) return send(response, 401, status(401, 'Unauthorized'));
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?$/.exec(url.pathname);
    if (match === null) return send(response, 404, status(404, 'the server could not find the requested resource'));
    const namespace = decodeURIComponent(match[1]!);
    const name = match[2] !== undefined ? decodeURIComponent(match[2]) : undefined;
    const verb = request.method === 'POST' ? 'create' : request.method === 'PATCH' ? 'patch' : (request.method ?? '').toLowerCase();
    if (failure !== undefined) {
      const message =
        failure === 403
          ? `events is forbidden: User "system:serviceaccount:pullguard-system:pullguard" cannot ${verb} resource "events" in API group "" in the namespace "${namespace}"`
          : `fake failure ${failure}`;
      return send(response, failure, status(failure, message, { kind: 'events', ...(name ? { name } : {}) }));
    }

    if (request.method === 'POST' && name === undefined) {
      if (contentType !== 'application/json')
        return send(
          response,
          415,
          status(
            415,
            `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf`,
          ),
        );
      const event = body as StoredEvent;
      const eventName = typeof event?.metadata?.['name'] === 'string' ? (event.metadata['name'] as string) : '';
      if (eventName === '') return send(response, 422, status(422, 'Event "" is invalid: metadata.name: Required value: name or generateName is required'));
      const eventNamespace = event.metadata['namespace'] ?? namespace;
      if (eventNamespace !== namespace)
        return send(response, 400, status(400, 'the namespace of the provided object does not match the namespace sent on the request'));
      const involved = event['involvedObject'] as { namespace?: string } | undefined;
      if (involved?.namespace !== undefined && involved.namespace !== namespace) {
        return send(
          response,
          422,
          status(422, `Event "${eventName}" is invalid: involvedObject.namespace: Invalid value: "${involved.namespace}": does not match event.namespace`),
        );
      }
      if (events.has(`${namespace}/${eventName}`))
        return send(response, 409, status(409, `events "${eventName}" already exists`, { name: eventName, kind: 'events' }));
      const stored: StoredEvent = {
        ...event,
        kind: 'Event',
        apiVersion: 'v1',
        metadata: {
          ...event.metadata,
          namespace,
          uid: randomUUID(),
          resourceVersion: String(++resourceVersion),
          creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
      };
      events.set(`${namespace}/${eventName}`, stored);
      return send(response, 201, stored);
    }

    if (request.method === 'PATCH' && name !== undefined) {
      const existing = events.get(`${namespace}/${name}`);
      if (existing === undefined) return send(response, 404, status(404, `events "${name}" not found`, { name, kind: 'events' }));
      let patched: StoredEvent | string;
      if (contentType === 'application/strategic-merge-patch+json' || contentType === 'application/merge-patch+json') {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) patched = 'patch must be a JSON object';
        else patched = { ...existing, ...(body as Record<string, unknown>), metadata: existing.metadata };
      } else if (contentType === 'application/json-patch+json') {
        patched = applyJsonPatch(existing, body);
      } else {
        return send(
          response,
          415,
          status(
            415,
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`,
          ),
        );
      }
      if (typeof patched === 'string') return send(response, 422, status(422, patched));
      patched.metadata = { ...existing.metadata, resourceVersion: String(++resourceVersion) };
      events.set(`${namespace}/${name}`, patched);
      return send(response, 200, patched);
    }

    return send(response, 405, status(405, `the server does not allow this method on the requested resource`));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((err: unknown) => {
      if (!response.headersSent) send(response, 500, status(500, err instanceof Error ? err.message : String(err)));
      else response.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfigPath,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${url}`,
      // client-node refuses plain http unless TLS verification is off ("HTTP protocol is not allowed
      // when skipTLSVerify is not set or false"); the token still travels in the Authorization header.
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: pullguard',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: fake',
      '  context:',
      '    cluster: fake',
      '    user: pullguard',
      'current-context: fake',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );

  return {
    url,
    token,
    kubeconfigPath,
    requests,
    events,
    failWith(code) {
      failure = code;
    },
    stall(ms) {
      stallMs = ms;
    },
    deleteAll() {
      events.clear();
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
