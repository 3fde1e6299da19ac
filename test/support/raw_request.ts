import http from 'node:http';
import https from 'node:https';

/**
 * One HTTP/1.1 request with every header under the test's control — a hostile `Host`, duplicated
 * headers, an absolute-form target, a chosen source address — which fetch clients do not allow
 * (they derive Host, and the TLS server name, from the URL).
 */
export interface RawRequest {
  /** Where to connect: `https://127.0.0.1:8443` or `http://127.0.0.1:8080`. */
  connectTo: string;
  /** The request target as sent: `/token`, or absolute-form `https://evil.example/token`. */
  target: string;
  method?: string;
  /** Sent as given (an array sends the header once per value); `host` included. */
  headers: Record<string, string | string[]>;
  /** A form body (sent as application/x-www-form-urlencoded). */
  form?: Record<string, string>;
  /** TLS: the CA to trust, the server name to verify (default localhost), a client certificate. */
  ca?: string;
  servername?: string;
  certificate?: { certificatePem: string; privateKeyPem: string };
  /** Local address to connect from (any 127.0.0.0/8 address works on Linux loopback). */
  localAddress?: string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The JSON body, or `{ raw: text }`. */
  body: Record<string, unknown>;
}

export function rawRequest(request: RawRequest): Promise<RawResponse> {
  const url = new URL(request.connectTo);
  const body = request.form ? new URLSearchParams(request.form).toString() : undefined;
  const headers: Record<string, string | string[]> = { ...request.headers, connection: 'close' };
  if (body !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  const options: https.RequestOptions = {
    host: url.hostname,
    port: Number(url.port),
    method: request.method ?? (body === undefined ? 'GET' : 'POST'),
    path: request.target,
    headers,
    setHost: false,
    localAddress: request.localAddress,
    agent: false,
  };
  const secure = url.protocol === 'https:';
  if (secure) {
    Object.assign(options, {
      ca: request.ca,
      servername: request.servername ?? 'localhost',
      cert: request.certificate?.certificatePem,
      key: request.certificate?.privateKeyPem,
    });
  }
  return new Promise((resolve, reject) => {
    const sent = (secure ? https : http).request(options, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { text += chunk; });
      response.on('end', () => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          parsed = { raw: text };
        }
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: parsed });
      });
      response.on('error', reject);
    });
    sent.on('error', reject);
    sent.end(body);
  });
}
