import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';

function memoryLogger(): { lines: () => Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination: destination as never });
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('logger', () => {
  it('writes one JSON object per line with level, time and message', () => {
    const { logger, lines } = memoryLogger();
    logger.child({ rpc: 'ImageStatus', requestId: 7 }).info({ outcome: 'ok', durationMs: 1.5 }, 'ImageStatus ok');
    expect(lines()).toMatchObject([{ level: 30, name: 'pullguard', rpc: 'ImageStatus', requestId: 7, outcome: 'ok', durationMs: 1.5, msg: 'ImageStatus ok' }]);
    expect(typeof lines()[0]!['time']).toBe('string');
  });

  it('redacts credential fields wherever a caller slips them in', () => {
    const { logger, lines } = memoryLogger();
    logger.info(
      { auth: { username: 'u', password: 'hunter2' }, headers: { authorization: 'Bearer tok-123' }, request: { password: 'pw-456', registry_token: 'rt-789' } },
      'oops',
    );
    const text = JSON.stringify(lines());
    for (const secret of ['hunter2', 'tok-123', 'pw-456', 'rt-789']) expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });
});
