/**
 * The cheapest verifying mirror imaginable, for the containerd bench's floor row: a pass-through
 * proxy in front of the registry that sha256-hashes every blob on its way to the runtime — nothing
 * stored, no policy, and (unlike pullguard) it forwards bytes before they are verified. What
 * containerd's pull costs through it is the least any mirror that checks the bytes can add.
 *
 *   node dist/test/bench/hashing-proxy.js 127.0.0.1:5000
 *
 * Listens on a free loopback port, prints it, prints `blob <digest> <bytes>` for each blob it
 * forwarded whole, and runs until killed. A blob whose bytes do not match its digest has its
 * response cut off before the last chunk, as a verifying mirror would (the registry sends
 * Content-Length, so the last chunk is known when it arrives).
 */
import { createHash } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

const BLOB_PATH_RE = /\/blobs\/(sha256:[0-9a-f]{64})$/;

const [upstreamHost = '', upstreamPort = '80'] = (process.argv[2] ?? '').split(':');
const server = createServer((req, res) => {
  const upstream = request({ host: upstreamHost, port: Number(upstreamPort), method: req.method, path: req.url, headers: req.headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    const digest = req.method === 'GET' && up.statusCode === 200 ? BLOB_PATH_RE.exec(new URL(req.url ?? '/', 'http://x').pathname)?.[1] : undefined;
    if (digest === undefined) {
      up.pipe(res);
      return;
    }
    const hash = createHash('sha256');
    const expectedLength = Number(up.headers['content-length']);
    let received = 0;
    up.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      // The last chunk goes out only once the whole blob is known to match.
      if (received === expectedLength && `sha256:${hash.digest('hex')}` !== digest) {
        res.destroy();
        up.destroy();
        return;
      }
      if (!res.write(chunk)) {
        up.pause();
        res.once('drain', () => up.resume());
      }
    });
    up.on('end', () => {
      res.end();
      process.stdout.write(`blob ${digest} ${received}\n`);
    });
    up.on('error', () => res.destroy());
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
