/**
 * node:util parseArgs with messages fit for a person: Node's own text for an unknown option ends in
 * `as in '-- "--sokcet"` with the quote never closed, and names the internals (`<value>`).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isPullguardError, PullguardError, ValidationError } from '../domain/errors.js';

/** A command line that does not parse: the caller prints the message and the command's usage, exit 2. */
export class CommandLineError extends PullguardError<'INVALID_ARGUMENT'> {
  constructor(message: string, cause: unknown) {
    super('INVALID_ARGUMENT', message, { cause });
  }
}

export function isCommandLineError(err: unknown): err is CommandLineError {
  return err instanceof CommandLineError;
}

export function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new CommandLineError(describeParseError(err), err);
  }
}

function describeParseError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  // Node quotes the offending token first in every parseArgs message.
  const token = /'([^']*)'/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${token ?? message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // "Option '--creds <value>' argument missing" / "Option '--help' does not take an argument"
      if (token !== undefined && /argument missing/.test(message)) return `option ${longName(token)} needs a value`;
      if (token !== undefined && /does not take an argument/.test(message)) return `option ${longName(token)} does not take a value`;
      return message;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${token ?? message}`;
    default:
      return message;
  }
}

/** `-c, --creds <value>` → `--creds` */
function longName(token: string): string {
  return token.replace(/ <value>$/, '').replace(/^-\w, /, '');
}

/** Usage errors: the message and the usage, exit 2. Anything else: the message (each problem on a line), exit 1. */
export async function reportErrors(
  command: string,
  usage: string,
  io: { readonly stderr: { write(text: string): unknown } },
  run: () => Promise<number>,
): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (isCommandLineError(err)) {
      io.stderr.write(`pullguard ${command}: ${err.message}\n\n${usage}\n`);
      return 2;
    }
    io.stderr.write(`pullguard ${command}: ${describeError(err)}\n`);
    return 1;
  }
}

/** One line, or for a configuration with several problems, one line per problem. */
export function describeError(err: unknown): string {
  if (err instanceof ValidationError && err.problems.length > 1)
    return `${err.message.slice(0, err.message.indexOf(':'))}:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`;
  if (isPullguardError(err)) return err.message;
  return err instanceof Error ? err.message : String(err);
}
