import net from 'node:net';

/**
 * A TCP proxy between Tether and the machine's PostgreSQL that the test can freeze: while frozen it
 * reads nothing and forwards nothing, in either direction, and keeps every socket open — new
 * connections are accepted (as a stopped server's kernel does) and then hear nothing. That is what a
 * PostgreSQL stopped by SIGSTOP looks like from the client (the kernel ACKs and buffers, the server
 * never answers), without stopping a server other people use. Data the client sent during the freeze
 * is delivered at the thaw, so a statement a client gave up on may still run then, as it would.
 */
export interface FreezableProxy {
  /** `url` with its host and port replaced by the proxy's. */
  proxiedUrl(url: string): string;
  freeze(): void;
  thaw(): void;
  /** Destroys every connection at once (a connection reset, e.g. a failover). */
  cutAll(): void;
  /** Connections accepted so far, and open now. */
  stats(): { accepted: number; open: number };
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

export async function startFreezableProxy(target: { host: string; port: number }): Promise<FreezableProxy> {
  let frozen = false;
  let accepted = 0;
  const pairs = new Set<Pair>();
  /** Ends to deliver at the thaw: a close that happened during the freeze. */
  const deferred: (() => void)[] = [];

  /** Forwards `from` → `to`; a close travels too, after the thaw if frozen. */
  function forward(from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk) => {
      if (frozen) {
        // Data read just before the freeze took effect waits with the rest.
        from.pause();
        deferred.push(() => to.write(chunk));
        return;
      }
      to.write(chunk);
    });
    // A close seen during the freeze reaches the other side at the thaw, after the data sent before it.
    from.on('close', () => (frozen ? deferred.push(() => to.end()) : to.destroy()));
    from.on('error', () => undefined);
  }

  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(target);
    const pair = { client, server: upstream };
    pairs.add(pair);
    if (frozen) {
      client.pause();
      upstream.pause();
    }
    forward(client, upstream);
    forward(upstream, client);
    const forget = () => pairs.delete(pair);
    client.on('close', forget);
    upstream.on('close', forget);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    proxiedUrl(url) {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    freeze() {
      frozen = true;
      for (const pair of pairs) {
        pair.client.pause();
        pair.server.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const action of deferred.splice(0)) action();
      for (const pair of pairs) {
        pair.client.resume();
        pair.server.resume();
      }
    },
    cutAll() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.server.destroy();
      }
    },
    stats: () => ({ accepted, open: pairs.size }),
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.server.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
