import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { dataDirTarEntries, extractDataDirTarball } from '../../src/storage/tar_extract.js';

/** A minimal ustar archive: enough for the extractor, which ignores checksums and ownership. */
function tarball(entries: Array<{ name: string; type: '0' | '5' | '2'; data?: string }>): Uint8Array {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    const header = Buffer.alloc(512);
    header.write(entry.name, 0, 100, 'utf8');
    header.write('0000600\0', 100);
    header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
    header.write(entry.type, 156);
    header.write('ustar\0', 257);
    blocks.push(header, Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]));
  }
  blocks.push(Buffer.alloc(1024));
  return new Uint8Array(Buffer.concat(blocks));
}

describe('extractDataDirTarball', () => {
  let directory: string;

  beforeEach(() => {
    directory = join(mkdtempSync(join(tmpdir(), 'tether-tar-test-')), 'data');
  });

  afterEach(() => {
    rmSync(join(directory, '..'), { recursive: true, force: true });
  });

  it('writes directories and files named relative to the data directory', () => {
    extractDataDirTarball(
      tarball([
        { name: '/base', type: '5' },
        { name: '/base/1', type: '0', data: 'page' },
        { name: '/PG_VERSION', type: '0', data: '17\n' },
      ]),
      directory,
    );
    expect(readFileSync(join(directory, 'base', '1'), 'utf8')).toBe('page');
    expect(readFileSync(join(directory, 'PG_VERSION'), 'utf8')).toBe('17\n');
  });

  it('refuses names that leave the directory and entry types it does not know', () => {
    expect(() => extractDataDirTarball(tarball([{ name: '/../escaped', type: '0', data: 'x' }]), directory)).toThrow(/escapes/);
    expect(existsSync(join(directory, '..', 'escaped'))).toBe(false);
    expect(() => extractDataDirTarball(tarball([{ name: '/link', type: '2' }]), directory)).toThrow(/unsupported/);
  });
});

describe('dataDirTarEntries', () => {
  it('yields folders before what they hold, with paths relative to the data directory and file bytes as views', () => {
    const archive = tarball([
      { name: '/base', type: '5' },
      { name: '/base/5', type: '5' },
      { name: '/base/5/1259', type: '0', data: 'pg_class page' },
      { name: '/PG_VERSION', type: '0', data: '17\n' },
      { name: '/pg_wal/000000010000000000000001', type: '0', data: '' },
    ]);
    const entries = [...dataDirTarEntries(archive)].map((entry) => (entry.kind === 'file'
      ? { kind: entry.kind, path: entry.path, data: Buffer.from(entry.data).toString(), view: entry.data.buffer === archive.buffer }
      : entry));
    expect(entries).toEqual([
      { kind: 'directory', path: 'base' },
      { kind: 'directory', path: 'base/5' },
      { kind: 'file', path: 'base/5/1259', data: 'pg_class page', view: true },
      { kind: 'file', path: 'PG_VERSION', data: '17\n', view: true },
      { kind: 'file', path: 'pg_wal/000000010000000000000001', data: '', view: true },
    ]);
  });

  it('refuses any name with a .. part, even one that would come back inside, and a truncated file', () => {
    expect(() => [...dataDirTarEntries(tarball([{ name: '/base/../../etc/passwd', type: '0', data: 'x' }]))]).toThrow(/escapes/);
    expect(() => [...dataDirTarEntries(tarball([{ name: '/base/../PG_VERSION', type: '0', data: 'x' }]))]).toThrow(/escapes/);
    const truncated = tarball([{ name: '/PG_VERSION', type: '0', data: 'x'.repeat(600) }]).subarray(0, 512 + 100);
    expect(() => [...dataDirTarEntries(truncated)]).toThrow(/truncated/);
  });
});
