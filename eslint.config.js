// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'data/**', '.tmp/**', '**/*.js', '!eslint.config.js', 'controller/web/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Floating promises in MQTT/ffmpeg code lose errors silently (STYLE.md §13).
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Node ESM helpers in plain JavaScript (deploy/ts-register.mjs, deploy/ts-hooks.mjs).
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', URL: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
  },
  {
    // Tests read loosely typed JSON bodies; `any` there is deliberate.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // All agent time comes from the injected clock: real time only through a Clock implementation.
    files: ['edge-agent/src/**/*.ts'],
    ignores: ['edge-agent/src/clock.ts'],
    rules: {
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Use the injected clock (edge-agent/src/clock.ts).' },
        { object: 'performance', property: 'now', message: 'Use the injected clock.' },
        { object: 'process', property: 'hrtime', message: 'Use the injected clock.' }],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Use the injected clock.' }],
    },
  },
);
