/**
 * The pino logger factory. The logger is created once in src/main.ts and passed down; nothing keeps
 * a logger at module scope. Redaction is a second line of defence: code must not log credentials in
 * the first place (AuthConfig is never put in a log object).
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log object. */
export const REDACT_PATHS = [
  'auth',
  'credentials',
  'password',
  'identityToken',
  'registryToken',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.auth',
  '*.password',
  '*.credentials',
  '*.identity_token',
  '*.registry_token',
  '*.authorization',
];

export interface LoggerOptions {
  readonly level?: string;
  /** Where JSON lines go (default stderr: stdout is the CLI's). */
  readonly destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: 'pullguard',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
