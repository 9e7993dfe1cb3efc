/**
 * Issue 4, signature-phase latency. A small image pushed to the real registry and signed by real
 * skopeo (--sign-by) with a trusted and an untrusted gpg key; the lookaside server serves N
 * signature files on loopback:
 *   - "N valid copies": signature-1..N are all the trusted signature;
 *   - "valid last": signature-1..N-1 by the untrusted key, signature-N the trusted one, so every
 *     signature must be read and checked before the policy is satisfied.
 * The image is already stored, so each PullImage re-resolves the manifest and re-runs the signature
 * phase but skips every layer. Also the cost of one verifySimpleSigning call on the real signature.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../../src/domain/digest.js';
import type { UntrustedSignatureBlob } from '../../src/domain/signature.js';
import { loadGpgKeys } from '../../src/signature/gpg-keys.js';
import { verifySimpleSigning } from '../../src/signature/simple-signing.js';
import { startLookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { startRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage } from '../helpers/signed-images.js';
import { log, makeWorkDir, pullImage, removeDir, startBenchServer } from './bench-env.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { median, msSince, percentile, round, timed } from './stats.js';

const COUNTS = [1, 10, 100] as const;
const PULLS_PER_CASE = 10;
const VERIFY_CALLS = 200;

export async function runSignaturesBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('signatures');
  const [registry, lookaside, trusted, untrusted] = await Promise.all([
    startRegistry(),
    startLookasideServer(),
    createGpgSigner('Bench Trusted'),
    createGpgSigner('Bench Untrusted'),
  ]);
  const figures: Figure[] = [];
  const details: Record<string, unknown> = { pullsPerCase: PULLS_PER_CASE, verifyCalls: VERIFY_CALLS };
  try {
    log('signatures: building, pushing and signing the image');
    const image = await buildOciImage(join(work, 'layout'), { tag: 'v1', layers: [{ size: 64 * 1024 }], seed: 404 });
    const signed = await pushSignedImage(image.dir, 'signed/app:v1', registry, [trusted, untrusted]);
    const [validSig, untrustedSig] = signed.signatures;
    if (validSig === undefined || untrustedSig === undefined) throw new Error('skopeo did not write two signatures');
    const reference = `${registry.host}/signed/app:v1`;

    const policy = join(work, 'policy.json');
    await writeFile(
      policy,
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: { docker: { [registry.host]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: trusted.publicKeyPath }] } },
      }),
    );
    const registriesD = join(work, 'registries.d');
    await mkdir(registriesD, { recursive: true });
    await writeFile(join(registriesD, 'lookaside.yaml'), `docker:\n  ${registry.host}:\n    lookaside: ${lookaside.url}\n`);

    const serveSignatures = async (sigs: readonly Uint8Array[]): Promise<void> => {
      await lookaside.reset();
      for (const [i, bytes] of sigs.entries()) await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, i + 1, bytes);
    };

    // ---- PullImage latency of an already-stored image, N signatures ----
    const server = await startBenchServer({ registryHost: registry.host, policy, registriesD });
    const rows: string[][] = [];
    const variants = [
      { name: 'N valid copies', make: (n: number) => Array.from({ length: n }, () => validSig) },
      { name: 'valid last', make: (n: number) => [...Array.from({ length: n - 1 }, () => untrustedSig), validSig] },
    ] as const;
    try {
      await serveSignatures([validSig]);
      await pullImage(server, reference); // stores the image; every later pull skips the layers
      for (let i = 0; i < 10; i++) await pullImage(server, reference); // warm-up of the whole path (JIT, pools)
      for (const variant of variants) {
        for (const n of COUNTS) {
          await serveSignatures(variant.make(n));
          await pullImage(server, reference); // warm-up, not counted (connection pool, key cache)
          lookaside.requests.length = 0;
          const samples: number[] = [];
          for (let i = 0; i < PULLS_PER_CASE; i++) samples.push((await timed(() => pullImage(server, reference))).ms);
          const requestsPerPull = lookaside.requests.length / PULLS_PER_CASE;
          const p50 = median(samples);
          rows.push([
            variant.name,
            String(n),
            round(p50).toFixed(1),
            round(percentile(samples, 90)).toFixed(1),
            round(Math.max(...samples)).toFixed(1),
            String(requestsPerPull),
            round(p50 / n, 2).toFixed(2),
          ]);
          figures.push({ name: `PullImage (stored image), ${n} signature(s), ${variant.name}, p50`, value: round(p50), unit: 'ms' });
          details[`pull_${variant.name.replace(/\s+/g, '_')}_${n}`] = { samplesMs: samples, lookasideRequestsPerPull: requestsPerPull };
          log(`signatures: ${variant.name} N=${n}: p50 ${round(p50)} ms, ${requestsPerPull} lookaside requests per pull`);
        }
      }
    } finally {
      await server.stop();
    }
    console.log('\n=== signatures (issue 4): PullImage of a stored image, N lookaside signatures on loopback ===');
    printTable(['signatures', 'N', 'p50 ms', 'p90 ms', 'max ms', 'lookaside req/pull', 'p50 ms per signature'], rows);
    console.log(
      `median of ${PULLS_PER_CASE} pulls per case (after 10 warm-up pulls, plus one per case); requests include the 404s that end probing (indices are probed a few at a time).`,
    );

    // ---- one verifySimpleSigning call on the real signature ----
    const keys = await loadGpgKeys([new Uint8Array(await readFile(trusted.publicKeyPath))]);
    const blob = (bytes: Uint8Array): UntrustedSignatureBlob => ({
      location: { source: 'lookaside', index: 1, url: `${lookaside.url}/${signed.repoPath}@sha256=x/signature-1` },
      format: 'simple-signing',
      bytes,
    });
    const expect = { manifestDigest: signed.manifestDigest as Digest, matchesIdentity: (ref: string) => ref === reference, now: new Date() };
    const verifyRows: string[][] = [];
    for (const [name, bytes, verdict] of [
      ['trusted key (accepted)', validSig, 'accepted'],
      ['untrusted key (rejected)', untrustedSig, 'rejected'],
    ] as const) {
      for (let i = 0; i < 50; i++) await verifySimpleSigning(blob(bytes), keys, expect); // JIT warm-up
      const samples: number[] = [];
      for (let i = 0; i < VERIFY_CALLS; i++) {
        const { ms, value } = await timed(() => verifySimpleSigning(blob(bytes), keys, expect));
        if (value.verdict !== verdict) throw new Error(`verifySimpleSigning gave ${value.verdict} for the ${name} signature: ${JSON.stringify(value)}`);
        samples.push(ms);
      }
      const p50 = median(samples);
      const p95 = percentile(samples, 95);
      verifyRows.push([name, round(p50, 2).toFixed(2), round(p95, 2).toFixed(2), round(Math.max(...samples), 2).toFixed(2)]);
      details[`verify_${verdict}`] = { p50Ms: p50, p95Ms: p95, maxMs: Math.max(...samples) };
      if (verdict === 'accepted') {
        figures.push(
          { name: 'verifySimpleSigning, one real signature, p50', value: round(p50, 2), unit: 'ms', target: { op: '<', value: 5 } },
          { name: 'verifySimpleSigning, one real signature, p95', value: round(p95, 2), unit: 'ms' },
        );
      } else {
        figures.push({ name: 'verifySimpleSigning, untrusted-key signature, p50', value: round(p50, 2), unit: 'ms' });
      }
    }
    console.log(`\n=== signatures (issue 4): verifySimpleSigning on the real skopeo signature, ${VERIFY_CALLS} calls ===`);
    printTable(['signature', 'p50 ms', 'p95 ms', 'max ms'], verifyRows);
  } finally {
    await Promise.all([registry.stop(), lookaside.stop(), trusted.dispose(), untrusted.dispose()]);
    await removeDir(work);
  }
  return { part: 'signatures', figures, details, seconds: round(msSince(started) / 1000) };
}
