import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { sniffSignatureFormat } from '../../../src/signature/sniff.js';

const b = (...bytes: number[]) => new Uint8Array(bytes);
const ascii = (s: string) => new TextEncoder().encode(s);

describe('sniffSignatureFormat (c/image FromBlob first-byte table)', () => {
  test.each([0xa0, 0xa1, 0xa2, 0xa3, 0xc8, 0x90, 0x91, 0x92, 0xc4, 0x88, 0x89, 0x8a, 0x8b, 0xc2])('%#x is simple signing (raw)', (first) => {
    const blob = b(first, 1, 2);
    expect(sniffSignatureFormat(blob)).toEqual({ ok: true, format: 'simple-signing', payload: blob });
  });
  test("0x3d ('=') is accepted, as upstream's quirk; 0x93 is not", () => {
    expect(sniffSignatureFormat(ascii('=abc'))).toMatchObject({ ok: true, format: 'simple-signing' });
    expect(sniffSignatureFormat(b(0x93))).toEqual({ ok: false, message: 'unrecognized signature format, starting with binary 0x93', firstByte: 0x93 });
  });
  test.each([
    ['<html>', '0x3c'],
    ['{"critical":1}', '0x7b'],
    ['\n', '0xa'],
    [' ', '0x20'],
    ['-----BEGIN PGP MESSAGE-----', '0x2d'],
    ['\ufeffx', '0xef'],
  ])('%j → %s without zero padding', (text, rendered) => {
    expect(sniffSignatureFormat(ascii(text))).toMatchObject({ ok: false, message: `unrecognized signature format, starting with binary ${rendered}` });
  });
  test('empty', () => expect(sniffSignatureFormat(b())).toEqual({ ok: false, message: 'empty signature blob' }));
  test('tagged simple-signing and sigstore-json', () => {
    expect(sniffSignatureFormat(b(0, ...ascii('simple-signing\n'), 0xa3, 9))).toEqual({ ok: true, format: 'simple-signing', payload: b(0xa3, 9) });
    expect(sniffSignatureFormat(b(0, ...ascii('sigstore-json\n{}')))).toEqual({ ok: true, format: 'sigstore', payload: ascii('{}') });
  });
  test.each([
    [b(0, ...ascii('simple-signing')), 'invalid signature format, missing newline'],
    [b(0, 0x73, 0x01, 0x0a), 'invalid signature format, non-ASCII byte 0x1'],
    [b(0, 0x73, 0xc3, 0xa9, 0x0a), 'invalid signature format, non-ASCII byte 0xc3'],
    [b(0, ...ascii('cosign\n')), 'unrecognized signature format "cosign"'],
  ])('tagged error %#', (blob, message) => {
    expect(sniffSignatureFormat(blob)).toMatchObject({ ok: false, message });
  });
  test('never throws', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => typeof sniffSignatureFormat(bytes).ok === 'boolean'));
  });
});
