import net, { type AddressInfo } from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that a test controls: `cut` drops every connection (as a
 * network failure or a restarted server does), `freeze` stops forwarding while keeping connections
 * open (as a SIGSTOPped server looks), `thaw` resumes. The machine's PostgreSQL is never touched.
 */
export interface TcpProxy {
  port: number;
  /** How many connections were accepted so far. */
  accepted(): number;
  cut(): void;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; held: { to: net.Socket; chunk: Buffer }[] }>();
  let frozen = false;
  let accepted = 0;

  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(target.port, target.host);
    const pair = { client, upstream, held: [] as { to: net.Socket; chunk: Buffer }[] };
    pairs.add(pair);
    const forward = (to: net.Socket) => (chunk: Buffer) => {
      if (frozen) pair.held.push({ to, chunk });
      else to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const close = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cut = () => {
    for (const pair of [...pairs]) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
  };
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => accepted,
    cut,
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) {
        for (const { to, chunk } of pair.held.splice(0)) to.write(chunk);
      }
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same PostgreSQL URL, through the proxy. */
export function throughProxy(url: string, proxy: TcpProxy): string {
  const parsed = new URL(url);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(proxy.port);
  return parsed.toString();
}
