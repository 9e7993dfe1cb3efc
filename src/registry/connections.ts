/**
 * The undici dispatchers the registry client sends through: the injected one (or an Agent of its
 * own), and per host with extra CAs (certs.d-style `<certsDir>/<host>/*.crt`, or explicit files) an
 * Agent that trusts them besides the system roots. close() closes only the Agents made here.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { PullguardError } from '../domain/errors.js';

export interface RegistryTls {
  readonly certsDir?: string;
  readonly caFiles?: Readonly<Record<string, readonly string[]>>;
}

export class RegistryConnections {
  private readonly base: Dispatcher;
  private readonly owned: Dispatcher[] = [];
  private readonly caAgents = new Map<string, Promise<Dispatcher>>();
  private readonly tls: RegistryTls | undefined;
  private readonly connectMs: number;

  constructor(options: { readonly dispatcher?: Dispatcher; readonly tls?: RegistryTls; readonly connectMs: number }) {
    this.tls = options.tls;
    this.connectMs = options.connectMs;
    if (options.dispatcher !== undefined) this.base = options.dispatcher;
    else {
      this.base = new Agent({ connect: { timeout: this.connectMs } });
      this.owned.push(this.base);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.owned.map((d) => d.close().catch(() => undefined)));
  }

  readonly dispatcherFor = (url: URL): Promise<Dispatcher> => {
    if (url.protocol !== 'https:' || this.tls === undefined) return Promise.resolve(this.base);
    let agent = this.caAgents.get(url.host);
    if (agent === undefined) {
      agent = this.loadCaAgent(url.host);
      this.caAgents.set(url.host, agent);
    }
    return agent;
  };

  private async loadCaAgent(host: string): Promise<Dispatcher> {
    const files = [...(this.tls?.caFiles?.[host] ?? [])];
    const certsDir = this.tls?.certsDir;
    if (certsDir !== undefined) {
      try {
        const dir = join(certsDir, host);
        for (const name of (await readdir(dir)).sort()) if (name.endsWith('.crt')) files.push(join(dir, name));
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ENOENT') throw new PullguardError('INVALID_CONFIG', `cannot read CA directory for ${host}`, { cause: err });
      }
    }
    if (files.length === 0) return this.base;
    const pems: string[] = [];
    for (const file of files) {
      try {
        pems.push(await readFile(file, 'utf8'));
      } catch (err) {
        throw new PullguardError('INVALID_CONFIG', `cannot read CA file ${file} for ${host}`, { cause: err });
      }
    }
    const agent = new Agent({ connect: { timeout: this.connectMs, ca: [...rootCertificates, ...pems] } });
    this.owned.push(agent);
    return agent;
  }
}
