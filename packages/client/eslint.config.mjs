// The repository's rules, plus: the browser-safe entry and what it imports
// take nothing from Node (`node:` modules live in node.ts, node-fetch.ts and cli.ts).
import root from '../../eslint.config.mjs';

export default [
  ...root,
  {
    files: ['src/**/*.ts'],
    ignores: ['src/node.ts', 'src/node-fetch.ts', 'src/cli.ts', 'src/**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ group: ['node:*'], message: 'the core is browser-safe: Node-only code goes in src/node.ts' }],
          paths: ['fs', 'path', 'http', 'https', 'stream', 'os', 'child_process', 'util', 'buffer'].map((name) => ({
            name,
            message: 'the core is browser-safe: Node-only code goes in src/node.ts',
          })),
        },
      ],
    },
  },
];
