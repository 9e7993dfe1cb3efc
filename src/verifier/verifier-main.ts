#!/usr/bin/env node
/**
 * The entry point an installed verifier script execs (install.ts): containerd's arguments and
 * stdin in, the verdict out (verifier-client.ts). Exits as soon as it has answered, whatever is
 * left on stdin; an unexpected failure blocks the pull too (exit 2).
 */
import { clientSays, EXIT_NO_VERDICT } from './protocol.js';
import { runVerifierClient } from './verifier-client.js';

function exit(code: number): void {
  // Flush stdout (a pipe to containerd) before exiting.
  process.stdout.write('', () => process.exit(code));
}

runVerifierClient(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }).then(exit, (err: unknown) => {
  process.stdout.write(`${clientSays.blocked(err instanceof Error ? err.message : String(err))}\n`);
  exit(EXIT_NO_VERDICT);
});
