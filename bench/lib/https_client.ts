import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

/** Where a server under test listens and how to reach it over TLS. */
export interface Endpoint {
  /** Connect address, e.g. https://127.0.0.1:40123 */
  origin: string;
  /** Host header / TLS server name, e.g. localhost:40123 */
  host: string;
  caFile?: string;
}

export interface OneRequest {
  method?: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  clientCertFile?: string;
  clientKeyFile?: string;
  timeoutMs?: number;
}

export interface OneResponse {
  status: number;
  text: string;
  json(): Record<string, unknown>;
}

/** One request on a fresh connection (no agent): for checks and setup, never for measuring. */
export function requestOnce(endpoint: Endpoint, request: OneRequest): Promise<OneResponse> {
  const url = new URL(request.path, endpoint.origin);
  const secure = url.protocol === 'https:';
  const options: https.RequestOptions = {
    method: request.method ?? 'GET',
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { host: endpoint.host, ...request.headers, ...(request.body ? { 'content-length': String(Buffer.byteLength(request.body)) } : {}) },
    agent: false,
    timeout: request.timeoutMs ?? 10_000,
    ...(secure ? {
      servername: endpoint.host.split(':')[0],
      ca: endpoint.caFile ? readFileSync(endpoint.caFile) : undefined,
      rejectUnauthorized: endpoint.caFile !== undefined,
      cert: request.clientCertFile ? readFileSync(request.clientCertFile) : undefined,
      key: request.clientKeyFile ? readFileSync(request.clientKeyFile) : undefined,
    } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, text, json: () => JSON.parse(text) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${request.method ?? 'GET'} ${url.href}`)));
    req.on('error', reject);
    req.end(request.body);
  });
}

/** application/x-www-form-urlencoded body. */
export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

export const FORM_HEADERS = { 'content-type': 'application/x-www-form-urlencoded' };
