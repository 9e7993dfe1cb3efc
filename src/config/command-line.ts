/**
 * node:util parseArgs with messages fit for a person: Node's own text for an unknown option ends in
 * `as in '-- "--sokcet"` with the quote never closed, and names the internals (`<value>`).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PullguardError } from '../domain/errors.js';

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
