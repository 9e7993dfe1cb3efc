/**
 * Client commands for a person without crictl: pull, images, inspect, rmi. They talk to a running
 * server over the socket; errors print the server's message and exit non-zero, a server that is not
 * there is named as such, and a command line that does not parse prints the usage (exit 2).
 */
import * as grpc from '@grpc/grpc-js';
import { isCommandLineError, parseCommandLine } from '../config/command-line.js';
import type { CriImage } from '../cri/cri-types.js';
import { WARNINGS_METADATA_KEY } from '../cri/status.js';
import { createCriImageClient, type CriImageClient } from './cri-client.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream;
  readonly defaultSocket: string;
}

/** The columns of `pullguard images`, for its output and its help alike. */
export function imageColumns(digests: boolean): string[] {
  return ['IMAGE', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'SIZE'];
}

const SOCKET_HELP =
  '  --socket PATH            server socket (default: $PULLGUARD_SOCKET, else $PULLGUARD_STATE_DIR/pullguard.sock, else ./.pullguard/pullguard.sock)';

export const CLIENT_HELP: Record<string, string> = {
  pull: `Usage: pullguard pull IMAGE [--creds USER[:PASSWORD]] [--namespace NS] [--socket PATH]

Pulls IMAGE through the running server: the signature policy is checked before any layer is fetched.
  --creds USER[:PASSWORD]  registry credentials (as crictl --creds)
  --namespace NS           evaluate the per-namespace policy of NS (as a pod in NS would)
${SOCKET_HELP}`,
  images: `Usage: pullguard images [FILTER] [--digests] [--quiet] [--socket PATH]

Lists stored images, one row per tag, in the columns ${imageColumns(false).join(', ')}.
  --digests                add the column DIGEST: ${imageColumns(true).join(', ')}
  -q, --quiet              print only the image ids
${SOCKET_HELP}`,
  inspect: `Usage: pullguard inspect IMAGE [--signatures] [--socket PATH]

Prints the image's status as JSON; --signatures prints the stored verification record.
${SOCKET_HELP}`,
  rmi: `Usage: pullguard rmi IMAGE... [--socket PATH]

Removes images (each with all of its tags) and collects unreferenced blobs. An image that is not
there is reported, the others are still removed, and the exit status is 1.
${SOCKET_HELP}`,
};

/** A client whose failure to reach the server says that no server is there, and how to name another. */
function connect(socket: string | undefined, io: CliIo): CriImageClient {
  const path = socket ?? io.defaultSocket;
  const client = createCriImageClient(path);
  return {
    call: <T>(...args: Parameters<CriImageClient['call']>): Promise<T> =>
      client.call<T>(...args).catch((err: unknown) => Promise.reject(explainUnreachable(err, path))),
    close: () => client.close(),
  };
}

/**
 * grpc-js says `No connection established. Last error: Error: connect ENOENT …. Resolution note: `
 * when nothing listens on the socket (ENOENT: no socket file; ECONNREFUSED: a stale one).
 */
export function explainUnreachable(err: unknown, socket: string): unknown {
  const e = err as Partial<grpc.ServiceError>;
  if (e.code !== grpc.status.UNAVAILABLE || typeof e.details !== 'string') return err;
  const errno = /\b(ENOENT|ECONNREFUSED|ENOTDIR|EACCES)\b/.exec(e.details)?.[1];
  if (errno === undefined) return err;
  if (errno === 'EACCES')
    return new Error(`cannot connect to ${socket}: permission denied (the socket is mode 0660: run as its owner or group)`, { cause: err });
  return new Error(`no pullguard is listening on ${socket} (start one with \`pullguard serve\`, or point at another with --socket PATH or PULLGUARD_SOCKET)`, {
    cause: err,
  });
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
    if (isCommandLineError(err)) {
      io.stderr.write(`pullguard ${command}: ${err.message}\n\n${CLIENT_HELP[command] ?? ''}\n`);
      return 2;
    }
    io.stderr.write(`pullguard ${command}: ${errorText(err)}\n`);
    return 1;
  }
}

async function pull(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: [...argv],
    allowPositionals: true,
    options: { creds: { type: 'string' }, namespace: { type: 'string' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
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
  const { values, positionals } = parseCommandLine({
    args: [...argv],
    allowPositionals: true,
    options: { digests: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length > 1) return usage('images', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    const response = await client.call<{ images: CriImage[] }>('ListImages', { filter: { image: { image: positionals[0] ?? '' } } });
    if (values.quiet) {
      for (const image of response.images) io.stdout.write(`${image.id}\n`);
      return 0;
    }
    const rows: string[][] = [imageColumns(values.digests === true)];
    for (const image of response.images) {
      const tags = image.repo_tags.length > 0 ? image.repo_tags : [`${image.repo_digests[0]?.split('@')[0] ?? '<none>'}:<none>`];
      for (const tag of tags) {
        const colon = tag.lastIndexOf(':');
        const digest = image.repo_digests[0]?.split('@')[1] ?? '<none>';
        rows.push([
          tag.slice(0, colon),
          tag.slice(colon + 1),
          ...(values.digests ? [digest.replace('sha256:', '').slice(0, 13)] : []),
          image.id.replace('sha256:', '').slice(0, 13),
          formatBytes(Number(image.size)),
        ]);
      }
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows)
      io.stdout.write(
        `${row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join('   ')
          .trimEnd()}\n`,
      );
    return 0;
  } finally {
    client.close();
  }
}

async function inspect(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: [...argv],
    allowPositionals: true,
    options: { signatures: { type: 'boolean' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length !== 1) return usage('inspect', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    const response = await client.call<{ image: CriImage | null; info: Record<string, string> }>('ImageStatus', {
      image: { image: positionals[0] },
      verbose: true,
    });
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
  const { values, positionals } = parseCommandLine({
    args: [...argv],
    allowPositionals: true,
    options: { socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) return usage('rmi', io, values.help === true);
  const client = connect(values.socket, io);
  try {
    let missing = 0;
    for (const image of positionals) {
      // RemoveImage succeeds for an absent image (CRI); ask first, so only a removal is reported as one.
      const status = await client.call<{ image: CriImage | null }>('ImageStatus', { image: { image } });
      if (status.image === null) {
        io.stderr.write(`pullguard rmi: no such image: ${image}\n`);
        missing += 1;
        continue;
      }
      await client.call('RemoveImage', { image: { image } });
      const tags = status.image.repo_tags.length > 0 ? status.image.repo_tags.join(', ') : 'none';
      io.stdout.write(`Deleted: ${image} (${status.image.id}; tags: ${tags})\n`);
    }
    return missing > 0 ? 1 : 0;
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
