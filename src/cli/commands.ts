/**
 * Client commands for a person without crictl: pull, images, inspect, rmi. They talk to a running
 * server over the socket; errors print the server's message and exit non-zero.
 */
import type * as grpc from '@grpc/grpc-js';
import { parseArgs } from 'node:util';
import type { CriImage } from '../cri/cri-types.js';
import { WARNINGS_METADATA_KEY } from '../cri/status.js';
import { createCriImageClient, type CriImageClient } from './cri-client.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream;
  readonly defaultSocket: string;
}

export const CLIENT_HELP: Record<string, string> = {
  pull: `Usage: pullguard pull IMAGE [--creds USER[:PASSWORD]] [--namespace NS] [--socket PATH]

Pulls IMAGE through the running server: the signature policy is checked before any layer is fetched.
  --creds USER[:PASSWORD]  registry credentials (as crictl --creds)
  --namespace NS           evaluate the per-namespace policy of NS (as a pod in NS would)
  --socket PATH            server socket (default ./.pullguard/pullguard.sock)`,
  images: `Usage: pullguard images [FILTER] [--digests] [--quiet] [--socket PATH]

Lists stored images (IMAGE ID, TAG, DIGEST, SIZE).`,
  inspect: `Usage: pullguard inspect IMAGE [--signatures] [--socket PATH]

Prints the image's status as JSON; --signatures prints the stored verification record.`,
  rmi: `Usage: pullguard rmi IMAGE... [--socket PATH]

Removes images (all of their tags) and collects unreferenced blobs. Removing an absent image succeeds.`,
};

function connect(socket: string | undefined, io: CliIo): CriImageClient {
  return createCriImageClient(socket ?? io.defaultSocket);
}

function errorText(err: unknown): string {
  const e = err as Partial<grpc.ServiceError>;
  return typeof e.details === 'string' && e.details !== '' ? e.details : err instanceof Error ? err.message : String(err);
}

export async function runClientCommand(command: string, argv: readonly string[], io: CliIo): Promise<number> {
  try {
    switch (command) {
      case 'pull':
        return await pull(argv, io);
      case 'images':
        return await images(argv, io);
      case 'inspect':
        return await inspect(argv, io);
      case 'rmi':
        return await rmi(argv, io);
      default:
        io.stderr.write(`unknown command ${command}\n`);
        return 2;
    }
  } catch (err) {
    io.stderr.write(`pullguard ${command}: ${errorText(err)}\n`);
    return 1;
  }
}

async function pull(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: [...argv], allowPositionals: true, options: { creds: { type: 'string' }, namespace: { type: 'string' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals.length !== 1) return usage('pull', io, values.help === true);
  const image = positionals[0]!;
  const auth = values.creds !== undefined ? splitCreds(values.creds) : undefined;
  const client = connect(values.socket, io);
  const progress = io.stdout.isTTY ? startProgress(client, image, io) : undefined;
  const warnings: string[] = [];
  try {
    const response = await client.call<{ image_ref: string }>(
      'PullImage',
      {
        image: { image },
        ...(auth ? { auth } : {}),
        ...(values.namespace ? { sandbox_config: { metadata: { name: 'pullguard-cli', namespace: values.namespace, uid: '' } } } : {}),
      },
      { onTrailers: (md) => warnings.push(...md.get(WARNINGS_METADATA_KEY).map(String)) },
    );
    progress?.stop();
    for (const warning of warnings) io.stderr.write(`warning: ${warning}\n`);
    io.stdout.write(`Image is up to date for ${response.image_ref}\n`);
    return 0;
  } finally {
    progress?.stop();
    client.close();
  }
}

/** A TTY progress line: PullImage is unary, so watch the store grow through ImageFsInfo. */
function startProgress(client: CriImageClient, image: string, io: CliIo): { stop(): void } {
  const started = Date.now();
  let baseline: number | undefined;
  let stopped = false;
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let frame = 0;
  const tick = async (): Promise<void> => {
    if (stopped) return;
    let used: number | undefined;
    try {
      const info = await client.call<{ image_filesystems: { used_bytes: { value: string } }[] }>('ImageFsInfo', {}, { deadlineMs: 2000 });
      used = Number(info.image_filesystems[0]?.used_bytes.value ?? 0);
    } catch {
      used = undefined;
    }
    if (stopped) return;
    baseline ??= used;
    const bytes = used !== undefined && baseline !== undefined ? Math.max(0, used - baseline) : 0;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    io.stdout.write(`\r${frames[frame++ % frames.length]} pulling ${image}: ${formatBytes(bytes)} stored, ${seconds}s `);
  };
  void tick();
  const timer = setInterval(() => void tick(), 250);
  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      io.stdout.write('\r\x1b[K');
    },
  };
}

async function images(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: [...argv], allowPositionals: true, options: { digests: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals.length > 1) return usage('images', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    const response = await client.call<{ images: CriImage[] }>('ListImages', { filter: { image: { image: positionals[0] ?? '' } } });
    if (values.quiet) {
      for (const image of response.images) io.stdout.write(`${image.id}\n`);
      return 0;
    }
    const rows: string[][] = [['IMAGE', 'TAG', ...(values.digests ? ['DIGEST'] : []), 'IMAGE ID', 'SIZE']];
    for (const image of response.images) {
      const tags = image.repo_tags.length > 0 ? image.repo_tags : [`${image.repo_digests[0]?.split('@')[0] ?? '<none>'}:<none>`];
      for (const tag of tags) {
        const colon = tag.lastIndexOf(':');
        const digest = image.repo_digests[0]?.split('@')[1] ?? '<none>';
        rows.push([tag.slice(0, colon), tag.slice(colon + 1), ...(values.digests ? [digest.replace('sha256:', '').slice(0, 13)] : []), image.id.replace('sha256:', '').slice(0, 13), formatBytes(Number(image.size))]);
      }
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) io.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('   ').trimEnd()}\n`);
    return 0;
  } finally {
    client.close();
  }
}

async function inspect(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: [...argv], allowPositionals: true, options: { signatures: { type: 'boolean' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals.length !== 1) return usage('inspect', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    const response = await client.call<{ image: CriImage | null; info: Record<string, string> }>('ImageStatus', { image: { image: positionals[0] }, verbose: true });
    if (response.image === null) {
      io.stderr.write(`pullguard inspect: no such image: ${positionals[0]}\n`);
      return 1;
    }
    if (values.signatures) {
      const record = response.info['verification'];
      io.stdout.write(`${record !== undefined ? JSON.stringify(JSON.parse(record), null, 2) : 'null'}\n`);
      return 0;
    }
    const info = Object.fromEntries(Object.entries(response.info).map(([k, v]) => [k, safeJson(v)]));
    io.stdout.write(`${JSON.stringify({ status: response.image, info }, null, 2)}\n`);
    return 0;
  } finally {
    client.close();
  }
}

async function rmi(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: [...argv], allowPositionals: true, options: { socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals.length === 0) return usage('rmi', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    for (const image of positionals) {
      await client.call('RemoveImage', { image: { image } });
      io.stdout.write(`Deleted: ${image}\n`);
    }
    return 0;
  } finally {
    client.close();
  }
}

function usage(command: string, io: CliIo, asked: boolean): number {
  (asked ? io.stdout : io.stderr).write(`${CLIENT_HELP[command]}\n`);
  return asked ? 0 : 2;
}

function splitCreds(creds: string): { username: string; password: string } {
  const colon = creds.indexOf(':');
  return colon === -1 ? { username: creds, password: '' } : { username: creds.slice(0, colon), password: creds.slice(colon + 1) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)}${units[unit]}`;
}
