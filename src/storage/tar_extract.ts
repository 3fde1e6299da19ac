import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const BLOCK = 512;

/** One entry of a data-directory tarball: its path inside the data directory, checked. */
export type DataDirEntry =
  | { kind: 'directory'; path: string }
  | { kind: 'file'; path: string; data: Uint8Array };

/**
 * The entries of a PGlite data-directory tarball (`PGlite#dumpDataDir('none')`: ustar, directories
 * and regular files only, names like `/base/5/1259`), in archive order (a folder before what it
 * holds). Paths are relative, `/`-separated and never leave the data directory; a file's `data` is a
 * view into `tarball` (a plain Uint8Array, whose `slice()` copies). Anything unexpected (other
 * entry types, names escaping the folder, a truncated archive) throws.
 */
export function* dataDirTarEntries(tarball: Uint8Array): Generator<DataDirEntry> {
  for (let offset = 0; offset + BLOCK <= tarball.length; ) {
    const header = tarball.subarray(offset, offset + BLOCK);
    const name = entryName(header);
    if (name === '') break; // two zero blocks end the archive
    const size = octalField(header, 124, 12);
    const type = String.fromCharCode(header[156] ?? 0);
    const relative = safeRelativePath(name);
    const dataStart = offset + BLOCK;
    if (type === '5') {
      if (relative !== '') yield { kind: 'directory', path: relative };
    } else if (type === '0' || type === '\0') {
      if (dataStart + size > tarball.length) throw new Error(`truncated tarball at ${name}`);
      if (relative === '') throw new Error(`tar file entry without a name: ${JSON.stringify(name)}`);
      // A plain Uint8Array view even of a Buffer: a Buffer's slice() is another view, not a copy.
      yield { kind: 'file', path: relative, data: new Uint8Array(tarball.buffer, tarball.byteOffset + dataStart, size) };
    } else {
      throw new Error(`unsupported tar entry type ${JSON.stringify(type)} for ${name}`);
    }
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
  }
}

/**
 * Unpacks a data-directory tarball (see {@link dataDirTarEntries}) into `directory`.
 *
 * Why not let PGlite load it: `new PGlite({ dataDir, loadDataDir })` boots a whole database just to
 * write these files, which costs more than the files themselves on first start. Anything unexpected
 * throws, and the caller falls back to PGlite.
 */
export function extractDataDirTarball(tarball: Uint8Array, directory: string): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  for (const entry of dataDirTarEntries(tarball)) {
    const target = join(directory, ...entry.path.split('/'));
    if (entry.kind === 'directory') mkdirSync(target, { recursive: true, mode: 0o700 });
    else writeFileSync(target, entry.data, { mode: 0o600 });
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
function safeRelativePath(name: string): string {
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new Error(`tar entry escapes the data directory: ${name}`);
  return parts.join('/');
}
