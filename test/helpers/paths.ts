import { fileURLToPath } from 'node:url';

/** The repository root, from dist/test/helpers/ where the compiled tests run. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const fromRoot = (...parts: string[]): string =>
  [repoRoot.replace(/\/$/, ''), ...parts].join('/');
