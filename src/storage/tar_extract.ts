import { mkdirSync, writeFileSync } from 'node:fs';
import { join, normalize, sep } from 'node:path';

const BLOCK = 512;

/**
 * Unpacks a PGlite data-directory tarball (`PGlite#dumpDataDir('none')`: ustar, directories and
 * regular files only, names like `/base/5/1259`) into `directory`.
 *
 * Why not let PGlite load it: `new PGlite({ dataDir, loadDataDir })` boots a whole database just to
 * write these files, which costs more than the files themselves on first start. Anything unexpected
 * (other entry types, names escaping the folder) throws, and the caller falls back to PGlite.
 */
export function extractDataDirTarball(tarball: Uint8Array, directory: string): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  for (let offset = 0; offset + BLOCK <= tarball.length; ) {
    const header = tarball.subarray(offset, offset + BLOCK);
    const name = entryName(header);
    if (name === '') break; // two zero blocks end the archive
    const size = octalField(header, 124, 12);
    const type = String.fromCharCode(header[156] ?? 0);
    const target = safeTarget(directory, name);
    const dataStart = offset + BLOCK;
    if (type === '5') {
      mkdirSync(target, { recursive: true, mode: 0o700 });
    } else if (type === '0' || type === '\0') {
      if (dataStart + size > tarball.length) throw new Error(`truncated tarball at ${name}`);
      writeFileSync(target, tarball.subarray(dataStart, dataStart + size), { mode: 0o600 });
    } else {
      throw new Error(`unsupported tar entry type ${JSON.stringify(type)} for ${name}`);
    }
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
  }
}

function entryName(header: Uint8Array): string {
  const name = cString(header, 0, 100);
  const prefix = cString(header, 345, 155);
  return prefix === '' ? name : `${prefix}/${name}`;
}

function cString(header: Uint8Array, start: number, length: number): string {
  const field = header.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(end === -1 ? field : field.subarray(0, end)).toString('utf8');
}

function octalField(header: Uint8Array, start: number, length: number): number {
  const text = cString(header, start, length).trim();
  const value = text === '' ? 0 : Number.parseInt(text, 8);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error('corrupt tar header');
  return value;
}

/** Entry names are relative to the data directory (a leading `/` included); none may leave it. */
function safeTarget(directory: string, name: string): string {
  const relative = normalize(name.replace(/^\/+/, ''));
  if (relative === '..' || relative.startsWith(`..${sep}`) || relative.split(sep).includes('..')) {
    throw new Error(`tar entry escapes the data directory: ${name}`);
  }
  return join(directory, relative);
}
