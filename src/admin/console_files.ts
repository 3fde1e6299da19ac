import { readFile } from 'node:fs/promises';
import type { Context, Next } from 'koa';

/**
 * The web console: three static files (src/admin/console/, copied next to this module by
 * `npm run build`), served under `admin.path` without authentication — they hold no data; every
 * datum comes from the admin API, which authenticates each call. A strict Content-Security-Policy:
 * only these files, no inline script or style, no other origin, no framing.
 */

const FILES = {
  '/': { name: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { name: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { name: 'console.css', type: 'text/css; charset=utf-8' },
} as const;

const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface ConsoleFile {
  type: string;
  body: Buffer;
}

/** Reads the files once, at start. */
export async function loadConsoleFiles(): Promise<Map<string, ConsoleFile>> {
  const directory = new URL('./console/', import.meta.url);
  const entries = await Promise.all(Object.entries(FILES).map(async ([path, file]) =>
    [path, { type: file.type, body: await readFile(new URL(file.name, directory)) }] as const));
  return new Map(entries);
}

export function adminConsole(prefix: string, files: ReadonlyMap<string, ConsoleFile>) {
  return async function adminConsoleMiddleware(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) return next();
    if (ctx.path === prefix) {
      // Relative URLs in the page (console.js, api/…) resolve below the prefix only with the slash.
      ctx.status = 308;
      ctx.redirect(`${prefix}/`);
      return;
    }
    const file = files.get(ctx.path.slice(prefix.length));
    if (!file || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.status = 200;
    ctx.type = file.type;
    ctx.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = file.body;
  };
}
