import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tether/', 'coverage/', 'packages/*/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The admin console runs in the browser (src/admin/console/).
    files: ['src/admin/console/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(['document', 'window', 'location', 'fetch', 'sessionStorage', 'URLSearchParams', 'FormData', 'Node', 'TextDecoderStream', 'AbortController']
        .map((name) => [name, 'readonly'])),
    },
  },
  {
    // A package is installed on its own: it never imports the server, nor anything outside itself.
    files: ['packages/*/src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../*'], message: 'a package imports only its own modules (./x.js) and its dependencies' },
          { group: ['tether-oauth', 'tether-oauth/*'], message: 'a package never imports the server' },
        ],
      }],
    },
  },
);
