/**
 * Listen addresses of pullguard's own HTTP endpoints (metrics, mirror): `host:port` or
 * `[v6]:port`, the host an IP literal or `localhost` — no DNS at bind time.
 */
import { isIP } from 'node:net';
import { PullguardError } from '../domain/errors.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** `what` names the setting in the error, e.g. "metrics address". */
export function parseListenAddress(address: string, what: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (match === null || host === undefined || port > 65535 || (host !== 'localhost' && isIP(host) === 0) || (match[1] !== undefined && isIP(host) !== 6)) {
    throw new PullguardError('INVALID_CONFIG', `${what} must be <ip>:<port> or [<ipv6>]:<port>, got ${JSON.stringify(address)}`);
  }
  return { host, port };
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return mapped?.[1]?.startsWith('127.') === true;
}
