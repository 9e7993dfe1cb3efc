/**
 * Issue 20, re-pulls: PullImage of an image already verified, with credentials, as kubelet's
 * ensure-secret-pulled-images check sends it. The real registry with htpasswd (every re-pull
 * resolves the manifest with the request's credentials), an image signed by real skopeo and gpg,
 * its signature served by the lookaside server, and two real servers on the same registry: one with
 * the verdict cache (the default), one with `--verdict-cache-ttl 0`. Re-pulls alternate between
 * them; the server's time is its own `PullImage ok` log line (handler start to answer).
 */
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';
import { log, makeWorkDir, removeDir, startBenchServer, type BenchServer } from './bench-env.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { msSince, percentile, round } from './stats.js';

const REPULLS = 300;
const WARMUP = 20;
const CREDS = { username: 'bench', password: 'bench-secret' };

/** durationMs of every `PullImage ok` line from `from` on. */
function serverMs(server: BenchServer, from: number): number[] {
  return server
    .logs()
    .slice(from)
    .flatMap((line) => {
      if (!line.includes('PullImage ok')) return [];
      const ms = (JSON.parse(line) as { durationMs?: unknown }).durationMs;
      return typeof ms === 'number' ? [ms] : [];
    });
}

type Auth = 'token' | 'htpasswd';

interface Variant {
  readonly serverMs: readonly [number[], number[]];
  readonly clientMs: readonly [number[], number[]];
  /** The registry alone: the same authenticated manifest GET from this process. */
  readonly floorMs: number[];
}

/** A manifest GET as pullguard makes it on a re-pull: Basic for htpasswd, the cached bearer token otherwise. */
async function registryFloorGet(registry: StartedRegistry, auth: Auth): Promise<() => Promise<void>> {
  const basic = `Basic ${Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64')}`;
  let authorization = basic;
  if (auth === 'token') {
    const token = registry.token!;
    const url = `${token.realm}?service=${encodeURIComponent(token.service)}&scope=${encodeURIComponent('repository:bench/app:pull')}`;
    const body = (await (await fetch(url, { headers: { authorization: basic } })).json()) as { token?: string; access_token?: string };
    authorization = `Bearer ${body.token ?? body.access_token}`;
  }
  const dispatcher = new Agent();
  return async () => {
    const res = await request(`${registry.url}/v2/bench/app/manifests/v1`, {
      dispatcher,
      headers: { authorization, accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`registry floor GET: ${res.statusCode}`);
  };
}

async function runVariant(work: string, auth: Auth, lookaside: LookasideServer, signer: GpgSigner): Promise<Variant> {
  const registry = await startRegistry(
    auth === 'htpasswd' ? { auth: 'htpasswd', users: { [CREDS.username]: CREDS.password } } : { tokenAuth: { users: { [CREDS.username]: CREDS.password } } },
  );
  const servers: BenchServer[] = [];
  try {
    const built = await buildOciImage(join(work, `img-${auth}`), { tag: 'v1', layers: [{ size: 64 * 1024 }, { size: 256 * 1024 }], seed: 2035 });
    const pushed = await pushSignedImage(built.dir, 'bench/app:v1', registry, signer, { creds: CREDS });
    await lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    const { policy, registriesD } = await writeSigningConfig(await makeWorkDir(`repull-${auth}`), {
      publicKeyPath: signer.publicKeyPath,
      lookasideUrl: lookaside.url,
      scope: registry.host,
    });
    const image = `${registry.host}/bench/app:v1`;
    servers.push(await startBenchServer({ registryHost: registry.host, policy, registriesD }));
    servers.push(await startBenchServer({ registryHost: registry.host, policy, registriesD, extraArgs: ['--verdict-cache-ttl', '0'] }));
    const floorGet = await registryFloorGet(registry, auth);

    const repull = async (server: BenchServer): Promise<number> => {
      const t = process.hrtime.bigint();
      await server.client.call('PullImage', { image: { image }, auth: CREDS });
      return msSince(t);
    };
    for (let i = 0; i < WARMUP; i++) {
      for (const server of servers) await repull(server);
      await floorGet();
    }
    const from = servers.map((s) => s.logs().length);
    const clientMs: [number[], number[]] = [[], []];
    const floorMs: number[] = [];
    for (let i = 0; i < REPULLS; i++) {
      // Interleaved, so all three see the same registry and machine state.
      for (const [k, server] of servers.entries()) clientMs[k]!.push(await repull(server));
      const t = process.hrtime.bigint();
      await floorGet();
      floorMs.push(msSince(t));
    }
    return { serverMs: [serverMs(servers[0]!, from[0]!), serverMs(servers[1]!, from[1]!)], clientMs, floorMs };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await registry.stop();
  }
}

export async function runRepullBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('repull');
  const lookaside = await startLookasideServer();
  const signer = await createGpgSigner('Re-pull Bench');
  try {
    const figures: Figure[] = [];
    const details: Record<string, unknown> = { repulls: REPULLS };
    for (const auth of ['token', 'htpasswd'] as const) {
      const v = await runVariant(work, auth, lookaside, signer);
      const p = (values: readonly number[], q: number): number => round(percentile(values, q), 2);
      const row = (name: string, values: readonly number[]): string[] => [name, `${p(values, 50)}`, `${p(values, 99)}`];
      log(`re-pull of a verified image with credentials (${auth} registry), ${REPULLS} each (ms)`);
      printTable(
        ['', 'p50', 'p99'],
        [
          row('server, with verdict cache', v.serverMs[0]),
          row('server, without (ttl 0)', v.serverMs[1]),
          row('client, with verdict cache', v.clientMs[0]),
          row('client, without (ttl 0)', v.clientMs[1]),
          row('registry alone: the manifest GET', v.floorMs),
        ],
      );
      figures.push(
        {
          name: `re-pull server p99, verdict cache, ${auth} registry`,
          value: p(v.serverMs[0], 99),
          unit: 'ms',
          ...(auth === 'token' ? { target: { op: '<=', value: 5 } as const } : {}),
        },
        { name: `re-pull server p50, verdict cache, ${auth} registry`, value: p(v.serverMs[0], 50), unit: 'ms' },
        { name: `re-pull server p99, no cache, ${auth} registry`, value: p(v.serverMs[1], 99), unit: 'ms' },
        { name: `re-pull server p50, no cache, ${auth} registry`, value: p(v.serverMs[1], 50), unit: 'ms' },
        { name: `registry manifest GET p50, ${auth} (floor)`, value: p(v.floorMs, 50), unit: 'ms' },
        { name: `registry manifest GET p99, ${auth} (floor)`, value: p(v.floorMs, 99), unit: 'ms' },
      );
      details[auth] = v;
    }
    return { part: 'repull', figures, details, seconds: round(msSince(started) / 1000, 1) };
  } finally {
    await Promise.all([lookaside.stop(), signer.dispose()]);
    await removeDir(work);
  }
}
