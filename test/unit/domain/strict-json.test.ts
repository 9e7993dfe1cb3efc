import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { type JsonNumber, objectKeyProblems, parseStrictJson, toPlainJson } from '../../../src/domain/strict-json.js';

const fails = (text: string) => {
  try {
    parseStrictJson(text);
  } catch (err) {
    expect(isPullguardError(err, 'INVALID_ARGUMENT')).toBe(true);
    return (err as Error).message;
  }
  return expect.unreachable(`${text} should not parse`);
};

describe('parseStrictJson', () => {
  test('agrees with JSON.parse on valid documents without duplicates', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        expect(toPlainJson(parseStrictJson(text))).toEqual(JSON.parse(text));
      }),
    );
  });
  test('duplicate keys, at any depth', () => {
    expect(fails('{"a":1,"a":2}')).toBe('Duplicate key "a"');
    expect(fails('{"x":{"b":[{"c":1,"c":1}]}}')).toBe('Duplicate key "c"');
  });
  test('collects duplicates when asked, first value wins', () => {
    const duplicates: string[] = [];
    const value = parseStrictJson('{"a":1,"a":2}', { duplicates });
    expect(duplicates).toEqual(['a']);
    expect(toPlainJson(value)).toEqual({ a: 1 });
  });
  test('trailing data', () => expect(fails('{} {}')).toBe('Unexpected data after JSON object'));
  test('syntax errors are coded', () => {
    expect(fails('{"a":')).toBe('unexpected end of JSON input');
    expect(fails('{a:1}')).toBe("invalid character 'a' looking for beginning of object key string");
  });
  test('__proto__ is an ordinary key', () => {
    const value = parseStrictJson('{"__proto__":{"polluted":true}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(value instanceof Map && value.has('__proto__')).toBe(true);
  });
  test('numbers keep their text (Go json.Number integer check)', () => {
    const n = (text: string) => (parseStrictJson(text) as JsonNumber).isSafeInteger();
    expect([n('1700000000'), n('1.0'), n('1e3'), n('-5')]).toEqual([true, false, false, true]);
  });
  test('deep nesting is a coded error, not a stack overflow', () => {
    expect(fails('['.repeat(100_000))).toMatch(/exceeded max depth/);
  });
  test('arbitrary input never throws anything but coded errors', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.json().map((j) => j.slice(0, Math.max(0, j.length - 1))),
        ),
        (text) => {
          try {
            parseStrictJson(text);
          } catch (err) {
            expect(isPullguardError(err)).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

test('objectKeyProblems: unknown and missing keys, non-objects', () => {
  expect(objectKeyProblems(parseStrictJson('{"a":1,"z":2}'), ['a', 'b'], ['a', 'b'])).toEqual(['Unknown key "z"', 'Key "b" missing in a JSON object']);
  expect(objectKeyProblems(parseStrictJson('"s"'), [])).toEqual(['JSON object expected, got "s"']);
  expect(objectKeyProblems(parseStrictJson('null'), [])).toEqual(['JSON object expected, got <nil>']);
});
