/**
 * Shared set-up for the benchmark parts: temp dirs, policy files, the real server with benchmark
 * flags, and skopeo invocations with timeouts sized for large images.
 *
 * The server is test/helpers/pullguard-server.ts's startPullguard. It keeps every log line in the
 * bench process; that is harmless here (the busiest part, load, logs a few hundred lines per run),
 * and every part measures the server process, never the bench's own memory.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';

const execFileAsync = promisify(execFile);

export async function makeWorkDir(name: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `pullguard-bench-${name}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** policy.json accepting anything, and an empty registries.d (no host-wide configuration leaks in). */
export async function acceptAnythingConfig(work: string): Promise<{ policy: string; registriesD: string }> {
  const policy = join(work, 'accept-anything-policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const registriesD = join(work, 'registries.d-empty');
  await mkdir(registriesD, { recursive: true });
  return { policy, registriesD };
}

export type BenchServer = RunningPullguard;

export interface ServerOptions {
  /** The plain-HTTP registry (omit when no registry is contacted). */
  readonly registryHost?: string;
  readonly policy: string;
  readonly registriesD: string;
  readonly stateDir?: string;
  readonly extraArgs?: readonly string[];
}

/**
 * The real `pullguard serve` at the production log level (info: the helper's own `--log-level debug`
 * comes first and a later flag wins), unless extraArgs names another level.
 */
export function startBenchServer(options: ServerOptions): Promise<BenchServer> {
  return startPullguard({
    args: [
      '--log-level',
      'info',
      ...(options.registryHost !== undefined ? ['--insecure-registry', options.registryHost] : []),
      '--signature-policy',
      options.policy,
      '--registries-d',
      options.registriesD,
      ...(options.extraArgs ?? []),
    ],
    ...(options.stateDir !== undefined ? { stateDir: options.stateDir } : {}),
  });
}

/** The server's process id (for /proc/<pid>/status memory readings). */
export function serverPid(server: BenchServer): number {
  const pid = server.process.pid;
  if (pid === undefined) throw new Error('pullguard has no process id (spawn failed)');
  return pid;
}

export async function pullImage(server: BenchServer, image: string, deadlineMs = 600_000): Promise<string> {
  const response = await server.client.call<{ image_ref: string }>('PullImage', { image: { image } }, { deadlineMs });
  return response.image_ref;
}

async function skopeo(args: readonly string[], timeoutMs: number): Promise<void> {
  try {
    await execFileAsync('skopeo', [...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

/** Pushes `oci:<layout>:<tag>` to the registry; a longer timeout than the test helper for 1 GiB images. */
export function pushLayout(layoutDir: string, tag: string, registryHost: string, repoAndTag: string): Promise<void> {
  return skopeo(
    ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layoutDir}:${tag}`, `docker://${registryHost}/${repoAndTag}`],
    600_000,
  );
}

/** The peer being compared against: skopeo copying from the registry into a fresh OCI layout. */
export function skopeoPullToOci(registryHost: string, repoAndTag: string, destDir: string): Promise<void> {
  return skopeo(['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${registryHost}/${repoAndTag}`, `oci:${destDir}:bench`], 600_000);
}

/**
 * Touches (and gives back) up to 2 GiB of free memory once, so the timed runs do not pay a VM's
 * first touch of never-used guest pages. On these VMs that costs several times the plain copy into
 * the page cache (580 ms of system time for a first 256 MiB write, 65–80 ms afterwards) and lands
 * on whichever tool happens to allocate fresh pages first; a node that has been up has touched its
 * memory long ago. Both tools then run on recycled pages.
 */
let memoryWarmed = false;
export async function warmFreeMemory(): Promise<void> {
  if (memoryWarmed) return;
  memoryWarmed = true;
  const touched = await touchFreeMemory(2 * 1024 ** 3);
  if (touched > 0) log(`touched ${Math.round(touched / 1024 ** 2)} MiB of free memory once (first-touch cost of a VM's fresh pages)`);
}

/**
 * Touches (and gives back) up to `bytes` of free memory now; returns how much (0 when too little
 * is free). The VM's balloon hands pages freed for a while back to the host, so a bench whose runs
 * each write and delete hundreds of MiB (containerd's) touches memory right before every timed
 * run, for each path alike.
 */
export async function touchFreeMemory(bytes: number): Promise<number> {
  const size = Math.min(bytes, Math.floor(freemem() / 4));
  if (size < 256 * 1024 * 1024) return 0;
  await execFileAsync(process.execPath, ['-e', `Buffer.allocUnsafeSlow(${size}).fill(1)`], { timeout: 120_000 });
  return size;
}

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}
