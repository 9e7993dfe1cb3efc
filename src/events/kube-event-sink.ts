/**
 * The API-server side of the event recorder, over @kubernetes/client-node: create an Event, patch
 * its count. client-node is imported lazily (it takes ~0.6 s to load), only when events are on.
 *
 * Patches are strategic-merge patches of `count` and `lastTimestamp`, as client-go's EventCorrelator
 * sends them; client-node would default to JSON Patch, so the Content-Type is set per call.
 *
 * Nothing here logs, and errors are reduced to a status, a reason and a short credential-free detail:
 * the kubeconfig (with its token) never leaves client-node.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { PullguardError } from '../domain/errors.js';
import type { PodWarningEvent } from './event-object.js';

export interface EventCountPatch {
  readonly count: number;
  readonly lastTimestamp: Date;
}

export interface EventSink {
  create(event: PodWarningEvent, signal: AbortSignal): Promise<void>;
  patch(namespace: string, name: string, patch: EventCountPatch, signal: AbortSignal): Promise<void>;
}

/** Why a call failed, safe to log. */
export class EventSinkError extends Error {
  /** HTTP status, when the API server answered. */
  readonly status: number | undefined;
  /** `Status.reason` (`Forbidden`, `NotFound`, …) or a transport code (`ECONNREFUSED`, `AbortError`). */
  readonly reason: string;

  constructor(status: number | undefined, reason: string, detail: string) {
    super(detail);
    this.name = 'EventSinkError';
    this.status = status;
    this.reason = reason;
  }
}

export interface KubeConnection {
  readonly kubeconfigPath?: string;
  readonly inCluster?: boolean;
}

/** A kubeconfig's `server`, for logs: scheme, host and port only. */
export function describeServer(kubeConfig: KubeConfig): string {
  const server = kubeConfig.getCurrentCluster()?.server ?? '';
  try {
    const url = new URL(server);
    return `${url.protocol}//${url.host}`;
  } catch {
    return '<unparseable server>';
  }
}

/**
 * Loads the kubeconfig. Errors name the file and the kind of failure only: a YAML parser's message
 * can quote the offending line, and that line can hold a token.
 */
export async function loadKubeConfig(connection: KubeConnection): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  if (connection.kubeconfigPath !== undefined) {
    try {
      kubeConfig.loadFromFile(connection.kubeconfigPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      throw new PullguardError(
        'INVALID_CONFIG',
        `cannot load kubeconfig ${connection.kubeconfigPath}: ${typeof code === 'string' ? code : 'not a valid kubeconfig'}`,
        {
          facts: { kubeconfig: connection.kubeconfigPath },
        },
      );
    }
  } else {
    kubeConfig.loadFromCluster();
  }
  const cluster = kubeConfig.getCurrentCluster();
  let server: URL | undefined;
  try {
    server = cluster !== null ? new URL(cluster.server) : undefined;
  } catch {
    server = undefined;
  }
  if (server === undefined || server.hostname === 'undefined' || server.port === 'undefined') {
    const where =
      connection.kubeconfigPath !== undefined ? `kubeconfig ${connection.kubeconfigPath}` : 'in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT)';
    throw new PullguardError('INVALID_CONFIG', `${where} names no usable API server`);
  }
  if (kubeConfig.getCurrentUser() === null) {
    throw new PullguardError('INVALID_CONFIG', `kubeconfig ${connection.kubeconfigPath ?? '(in-cluster)'} has no user for its current context`);
  }
  return kubeConfig;
}

export interface KubeEventSinkOptions {
  /** Responses larger than this (by Content-Length) are refused. Default 1 MiB. */
  readonly maxResponseBytes?: number;
}

export async function createKubeEventSink(kubeConfig: KubeConfig, options: KubeEventSinkOptions = {}): Promise<EventSink> {
  const client = await import('@kubernetes/client-node');
  const { CoreV1Api, Observable, PatchStrategy } = client;
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;

  type Middleware = NonNullable<NonNullable<Parameters<typeof api.createNamespacedEvent>[1]>['middleware']>[number];
  const middleware = (signal: AbortSignal, contentType?: string): Middleware => ({
    pre(context) {
      context.setSignal(signal);
      if (contentType !== undefined) context.setHeaderParam('Content-Type', contentType);
      return new Observable(Promise.resolve(context));
    },
    post(response) {
      const length = Number(response.headers['content-length']);
      if (Number.isFinite(length) && length > maxResponseBytes) {
        return new Observable(
          Promise.reject(new EventSinkError(response.httpStatusCode, 'ResponseTooLarge', `API server response of ${length} bytes exceeds ${maxResponseBytes}`)),
        );
      }
      return new Observable(Promise.resolve(response));
    },
  });

  return {
    async create(event, signal) {
      try {
        await api.createNamespacedEvent(
          { namespace: event.metadata.namespace, body: event },
          { middleware: [middleware(signal)], middlewareMergeStrategy: 'append' },
        );
      } catch (err) {
        throw toSinkError(err, client.ApiException);
      }
    },
    async patch(namespace, name, patch, signal) {
      try {
        await api.patchNamespacedEvent(
          { namespace, name, body: { count: patch.count, lastTimestamp: patch.lastTimestamp.toISOString() } },
          { middleware: [middleware(signal, PatchStrategy.StrategicMergePatch)], middlewareMergeStrategy: 'append' },
        );
      } catch (err) {
        throw toSinkError(err, client.ApiException);
      }
    },
  };
}

const MAX_DETAIL = 300;

/** Keeps a status, a reason and a short message; drops headers, bodies we did not expect, and any URL userinfo. */
function toSinkError(err: unknown, ApiException: new (...args: never[]) => { code: number; body: unknown }): EventSinkError {
  if (err instanceof EventSinkError) return err;
  if (err instanceof ApiException) {
    const { code, body } = err as unknown as { code: number; body: unknown };
    let status: { reason?: unknown; message?: unknown } | undefined;
    try {
      status = typeof body === 'string' ? (JSON.parse(body) as typeof status) : undefined;
    } catch {
      status = undefined;
    }
    const reason = typeof status?.reason === 'string' && status.reason !== '' ? status.reason : `HTTP${code}`;
    const detail = typeof status?.message === 'string' ? status.message : `API server answered ${code}`;
    return new EventSinkError(code, reason, scrub(detail));
  }
  const error = err as { name?: unknown; code?: unknown; type?: unknown; message?: unknown } | null;
  const reason = typeof error?.code === 'string' ? error.code : typeof error?.name === 'string' ? error.name : 'Error';
  const detail = typeof error?.message === 'string' ? error.message : String(err);
  return new EventSinkError(undefined, reason, scrub(detail));
}

function scrub(text: string): string {
  const clean = text.replace(/\/\/[^/\s@]*@/g, '//').replace(/Bearer\s+\S+/gi, 'Bearer [redacted]');
  return clean.length > MAX_DETAIL ? `${clean.slice(0, MAX_DETAIL)}…` : clean;
}
