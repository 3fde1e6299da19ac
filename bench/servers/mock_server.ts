/**
 * Baseline of the mock pair: oauth2-mock-server (a popular test mock) issuing a plain
 * client_credentials JWT, signed ES256 (the algorithm Tether signs with), over the same TLS
 * transport (https with Tether's development server certificate; the mock cannot ask for a client
 * certificate). It checks nothing: no client authentication, no resource policy, no binding, no record.
 *
 * argv: <port> <server cert PEM file> <server key PEM file>
 * Sends { type: 'ready', port } over IPC once listening; exits on SIGTERM.
 */
import { OAuth2Server } from 'oauth2-mock-server';

const [port, certFile, keyFile] = process.argv.slice(2) as [string, string, string];

const server = new OAuth2Server(keyFile, certFile);
await server.issuer.keys.generate('ES256');
await server.start(Number(port), '127.0.0.1');
process.send?.({ type: 'ready', port: Number(port) });
process.once('SIGTERM', () => {
  server.stop().then(() => process.exit(0), () => process.exit(1));
});
