import { describe, expect, it } from 'vitest';
import { boundMessage, describePullWarnings } from '../../../src/events/event-object.js';

const warning = (n: number) => ({
  code: 'PGW001',
  message: `signature could not be read, but the policy was satisfied by signature-1 (key C410DBD12BFE86658A3D684094F969598CC10D95): signature-${n} (http://sigs.example/app@sha256=${'a'.repeat(64)}/signature-${n}): received unexpected HTTP status: 503 Service Unavailable (HTTP 503, 3 attempts)`,
});

describe('boundMessage', () => {
  it('leaves a message that fits alone', () => {
    const text = `Image "app:v1": ${describePullWarnings([warning(2)])}`;
    expect(boundMessage(text)).toBe(text);
  });

  it('drops whole warnings from the end, counted, so no warning shown loses its facts', () => {
    const text = `Image "app:v1": ${describePullWarnings(Array.from({ length: 8 }, (_, i) => warning(i + 2)))}`;
    const bounded = boundMessage(text);
    expect(Buffer.byteLength(bounded)).toBeLessThanOrEqual(1024);
    const shown = bounded.replace(/; and \d+ more warnings$/, '').split(/; (?=PGW)/);
    // As many whole warnings as fit (two of these ~330-byte ones), and the rest counted.
    expect(shown.length).toBeGreaterThanOrEqual(2);
    expect(bounded.endsWith(`; and ${8 - shown.length} more warnings`)).toBe(true);
    for (const part of shown) expect(part).toMatch(/503 Service Unavailable \(HTTP 503, 3 attempts\)$/);
  });

  it('cuts text without warning boundaries on a character boundary, marked …', () => {
    const bounded = boundMessage('ü'.repeat(3000), 100);
    expect(Buffer.byteLength(bounded)).toBeLessThanOrEqual(100);
    expect(bounded.endsWith('…')).toBe(true);
    expect(bounded).not.toContain('\uFFFD');
  });
});
