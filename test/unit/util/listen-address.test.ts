import { describe, expect, it } from 'vitest';
import { PullguardError } from '../../../src/domain/errors.js';
import { isLoopbackHost, parseListenAddress } from '../../../src/util/listen-address.js';

describe('listen address parsing', () => {
  it('parses host:port and [v6]:port and rejects the rest', () => {
    expect(parseListenAddress('127.0.0.1:9464', 'metrics address')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress('[::1]:0', 'metrics address')).toEqual({ host: '::1', port: 0 });
    expect(parseListenAddress('localhost:1', 'metrics address')).toEqual({ host: 'localhost', port: 1 });
    for (const bad of ['9464', ':9464', 'example.com:80', '127.0.0.1:70000', '::1:80', '[127.0.0.1]:80', '127.0.0.1:']) {
      expect(() => parseListenAddress(bad, 'metrics address'), bad).toThrow(PullguardError);
    }
    expect(() => parseListenAddress('9464', 'mirror address')).toThrow(/^mirror address must be/);
  });

  it('knows loopback hosts', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1'].every(isLoopbackHost)).toBe(true);
    expect(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1'].some(isLoopbackHost)).toBe(false);
  });
});
