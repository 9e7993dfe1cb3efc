/**
 * The grpc-go CRI client (test/go-client): built once per test process by build.sh (itself a no-op
 * when up to date), then run per call. It dials like kubelet: `bare` sends the socket path as
 * :authority (kubelet/crictl <= 1.30), `localhost` sends `localhost` (1.31+).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = fileURLToPath(new URL('../go-client/', import.meta.url));
export const GO_CLIENT_BINARY = `${here}bin/cri-client`;

export type DialStyle = 'bare' | 'localhost';
export type GoClientRpc = 'list' | 'status' | 'pull' | 'remove' | 'fsinfo' | 'version';

export interface GoClientDetail {
  type_url: string;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  violations?: { type: string; subject: string; description: string }[];
  error?: string;
}

/** A failed call as kubelet sees it (status from grpc-go) plus the raw trailer view. */
export interface GoClientFailure {
  code: number;
  code_name: string;
  message: string;
  error_string: string;
  signature_validation_failed: boolean;
  registry_unavailable: boolean;
  details: GoClientDetail[];
  /** grpc-status / grpc-message as sent (absent when the stream died before trailers). */
  header?: { grpc_status: string; grpc_message: string; has_details_bin: boolean };
}

export type GoClientResult =
  | { ok: true; dial: DialStyle; rpc: GoClientRpc; response: Record<string, unknown> }
  | { ok: false; dial: DialStyle; rpc: GoClientRpc; error?: GoClientFailure; dial_error?: string };

let built: Promise<string> | undefined;

/** Builds the client (once per process); resolves to the binary path. */
export function buildGoClient(): Promise<string> {
  built ??= run('bash', [`${here}build.sh`], { timeout: 300_000 }).then(() => GO_CLIENT_BINARY);
  return built;
}

export interface GoClientCall {
  socket: string;
  dial: DialStyle;
  rpc: GoClientRpc;
  args?: readonly string[];
  timeoutMs?: number;
}

export async function runGoClient(call: GoClientCall): Promise<GoClientResult> {
  const binary = await buildGoClient();
  const timeout = call.timeoutMs ?? 10_000;
  const argv = ['--socket', call.socket, '--dial', call.dial, '--timeout', `${timeout}ms`, call.rpc, ...(call.args ?? [])];
  let stdout: string;
  try {
    ({ stdout } = await run(binary, argv, { timeout: timeout + 5_000 }));
  } catch (err) {
    // Exit 1 is a reported failure with JSON on stdout; anything else is a broken client.
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    if (failed.code !== 1 || !failed.stdout) throw err;
    stdout = failed.stdout;
  }
  return JSON.parse(stdout) as GoClientResult;
}
