/**
 * The commands that read the store on disk instead of asking a server: fsck and verify. They
 * resolve the daemon configuration exactly as `pullguard serve` does (flags, --config file,
 * PULLGUARD_STATE_DIR, the same defaults), so they look at the store and the policy the server used,
 * and they never create a store: a mistyped state directory is an error, not an empty store.
 */
import { join } from 'node:path';
import { parseCommandLine, reportErrors } from '../config/command-line.js';
import { policySelection, resolveDaemonConfig, type DaemonConfig, type Environment } from '../config/daemon-config.js';
import { formatSettingsHelp, parseOptionsFor, SERVE_SETTINGS, type ParseArgsOptions } from '../config/flag-table.js';
import { describeEmbeddedDefault, PolicySelector, type LoadedPolicy } from '../config/policy-loader.js';
import { ImageCatalog } from '../images/image-catalog.js';
import { repositoryNamed, reverifyStoredImage } from '../pull/reverify.js';
import {
  describePolicySource,
  policySourceOf,
  recordedPolicySource,
  samePolicySource,
  verificationRecordFor,
  type PolicySource,
} from '../pull/verification-record.js';
import { fsck } from '../store/fsck.js';
import { openStore } from '../store/open-store.js';

export interface OfflineIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly environment: Environment;
}

/** The serve settings each command uses; the others are accepted and checked, so the server's command line can be reused. */
const FSCK_SETTINGS = ['config', 'state-dir'];
const VERIFY_SETTINGS = ['config', 'state-dir', 'signature-policy', 'signature-policy-dir', 'require-signature-verification'];
const OTHER_SERVE_FLAGS = 'every other `pullguard serve` flag is accepted too, so its command line can be reused';

const settingsHelp = (flags: readonly string[], own: readonly (readonly [string, string])[]): string =>
  formatSettingsHelp(
    SERVE_SETTINGS.filter((s) => flags.includes(s.flag)),
    [...own, ['-h, --help', 'this help'], ['...', OTHER_SERVE_FLAGS]],
  );

export const FSCK_HELP = `Usage: pullguard fsck [--config FILE] [--state-dir DIR] [--repair] [--json]

Checks every blob digest and size, the image index against the blobs, and stale temp files, in the
store \`pullguard serve\` uses with the same --config, --state-dir or PULLGUARD_STATE_DIR. Run it
while the server is stopped. A state directory without a store is an error; nothing is created.
${settingsHelp(FSCK_SETTINGS, [
  ['--repair', 'remove only what is corrupt or unreachable'],
  ['--json', 'print the report as JSON'],
])}`;

export const VERIFY_HELP = `Usage: pullguard verify IMAGE [--config FILE] [--state-dir DIR] [--signature-policy FILE] [--signature-policy-dir DIR] [--require-signature-verification] [--namespace NS]

Re-evaluates the policy \`pullguard serve\` would use (the same flags, --config file, environment and
defaults) against the signatures stored with IMAGE alone (no network), as CRI-O re-checks at
container creation. Prints the policy file and scope it re-checked and those the image was accepted
under, and says when they differ. Exit 0: still satisfied; 1: not satisfied, not found, no store.
${settingsHelp(VERIFY_SETTINGS, [['--namespace NS', 'use the per-namespace policy of NS (default: the namespace the image was pulled for)']])}`;

export async function runFsck(argv: readonly string[], io: OfflineIo): Promise<number> {
  return reportErrors('fsck', FSCK_HELP, io, async () => {
    const options: ParseArgsOptions = { ...parseOptionsFor(), repair: { type: 'boolean' }, json: { type: 'boolean' } };
    const { values } = parseCommandLine({ args: [...argv], options });
    if (values['help'] === true) {
      io.stdout.write(`${FSCK_HELP}\n`);
      return 0;
    }
    const config = resolveDaemonConfig(values, io.environment);
    const store = await openStore(config.storeDir, { create: false });
    try {
      const repair = values['repair'] === true;
      const report = await fsck(store.blobs, store.images, { repair });
      if (values['json'] === true) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        io.stdout.write(
          `store: ${config.storeDir}\nblobs checked: ${report.blobsChecked}\nimages checked: ${report.recordsChecked}\ncorrupt blobs: ${report.corruptBlobs.length}\nbroken images: ${report.brokenRecords.length}\nstale temp files: ${report.staleIngests.length}\nunreachable blobs: ${report.unreachableBlobs.length}\n${report.ok ? 'store is consistent' : repair ? 'problems repaired' : 'problems found (run with --repair to fix)'}\n`,
        );
      }
      return report.ok || repair ? 0 : 1;
    } finally {
      await store.close();
    }
  });
}

export async function runVerify(argv: readonly string[], io: OfflineIo): Promise<number> {
  return reportErrors('verify', VERIFY_HELP, io, async () => {
    const options: ParseArgsOptions = { ...parseOptionsFor(), namespace: { type: 'string' } };
    const { values, positionals } = parseCommandLine({ args: [...argv], allowPositionals: true, options });
    if (values['help'] === true || positionals.length !== 1) {
      (values['help'] === true ? io.stdout : io.stderr).write(`${VERIFY_HELP}\n`);
      return values['help'] === true ? 0 : 2;
    }
    const config = resolveDaemonConfig(values, io.environment);
    const store = await openStore(config.storeDir, { create: false });
    try {
      const name = positionals[0]!;
      const catalog = new ImageCatalog(store.images, { collectGarbage: async () => undefined, fsInfo: async () => store.blobs.fsInfo() });
      const record = await catalog.find(name);
      if (record === undefined) {
        io.stderr.write(`pullguard verify: no such image: ${name} (in ${config.storeDir})\n`);
        return 1;
      }
      const accepted = verificationRecordFor(record.verification, repositoryNamed(name)?.name);
      // The namespace the image was pulled for picks the same per-namespace policy the server chose.
      const namespace = typeof values['namespace'] === 'string' ? values['namespace'] : accepted?.namespace;
      const { policy, source } = await currentPolicy(config, namespace);
      if (policy.embedded) io.stderr.write(`pullguard verify: ${describeEmbeddedDefault()}\n`);
      const verdict = await reverifyStoredImage({
        record,
        name,
        content: store.blobs,
        policy,
        requireSignatureVerification: config.requireSignatureVerification,
      });

      const lines: string[] = [];
      if (verdict.allowed) {
        lines.push(`OK: ${name} (${record.id}) still satisfies ${verdict.scope.policyFile} [${verdict.scope.scope}]`);
        for (const r of verdict.requirements)
          lines.push(
            r.satisfiedBy
              ? `  ${r.type}: signature-${r.satisfiedBy.location.index} by ${r.satisfiedBy.signer.primaryKeyFingerprint}`
              : `  ${r.type}: satisfied`,
          );
      } else {
        lines.push(`NOT SATISFIED: ${name} (${record.id}) under ${verdict.scope.policyFile} [${verdict.scope.scope}]: ${verdict.denial ?? 'denied'}`);
      }
      lines.push(`  re-checked under: ${describePolicySource(source)}, scope ${JSON.stringify(verdict.scope.scope)}`);
      if (accepted === undefined) {
        lines.push('  accepted under: unknown (the image has no verification record)');
      } else {
        const acceptedSource = recordedPolicySource(accepted);
        lines.push(
          `  accepted under: ${describePolicySource(acceptedSource)}, scope ${JSON.stringify(accepted.scope)} (${accepted.time}${accepted.namespace !== undefined ? `, namespace ${accepted.namespace}` : ''})`,
        );
        if (!samePolicySource(source, acceptedSource) || accepted.scope !== verdict.scope.scope) {
          lines.push(
            '  note: this is not the policy and scope the image was accepted under; give verify the --config or --signature-policy the server runs with to re-check that one',
          );
        }
      }
      io.stdout.write(`${lines.join('\n')}\n`);
      return verdict.allowed ? 0 : 1;
    } finally {
      await store.close();
    }
  });
}

/** The policy `serve` would choose for `namespace` under `config`, and where it came from. */
async function currentPolicy(config: DaemonConfig, namespace: string | undefined): Promise<{ policy: LoadedPolicy; source: PolicySource }> {
  const selection = policySelection(config);
  const policy = await new PolicySelector(selection).policyForNamespace(namespace);
  const namespaceFile =
    namespace !== undefined && namespace !== '' && selection.namespaceDir !== undefined
      ? { name: namespace, file: join(selection.namespaceDir, `${namespace}.json`) }
      : undefined;
  return { policy, source: policySourceOf({ embedded: policy.embedded, file: policy.policy.source }, namespaceFile) };
}
