import { readFile } from 'node:fs/promises';
import { CommanderError } from 'commander';
import { buildProgram } from '../../src/cli/program.js';

describe('tether --version', () => {
  test.each(['--version', '-V'])('%s prints the version of tether-oauth from its package.json', async (flag) => {
    const manifest = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
    expect(manifest.name).toBe('tether-oauth');
    let printed = '';
    const program = buildProgram().exitOverride().configureOutput({ writeOut: (text) => { printed += text; } });
    const thrown = await program.parseAsync(['node', 'tether', flag]).then(() => undefined, (error: unknown) => error);
    expect(thrown).toBeInstanceOf(CommanderError);
    expect({ code: (thrown as CommanderError).code, exitCode: (thrown as CommanderError).exitCode, printed }).toEqual({ code: 'commander.version', exitCode: 0, printed: `${manifest.version}\n` });
  });
});
