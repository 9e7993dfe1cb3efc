/**
 * Runs once before the suite: integration tests spawn `dist/src/main.js` as a real process, so the
 * build must be current. (`npm test` already ran tsc; this covers `npx vitest` on its own.)
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.json`], { stdio: 'inherit' });
}
