/**
 * A size-limited tmpfs for disk-full tests. Needs root (mount(8)); when mounting is impossible the
 * caller gets the reason to skip with instead of a failure.
 *
 *   const fs = await mountTmpfs(dir, 8 * 1024 * 1024);
 *   if (!fs.mounted) return ctx.skip(fs.reason);
 *   …
 *   await fs.unmount();                       // also attempted (lazily) on process exit
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export type MountedTmpfs = { readonly mounted: true; readonly dir: string; unmount(): Promise<void> } | { readonly mounted: false; readonly reason: string };

const mounted = new Set<string>();
process.once('exit', () => {
  for (const dir of mounted) {
    try {
      execFileSync('umount', ['-l', dir]);
    } catch {
      // best effort
    }
  }
});

export async function mountTmpfs(dir: string, sizeBytes: number): Promise<MountedTmpfs> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { mounted: false, reason: 'mounting a tmpfs needs root' };
  await mkdir(dir, { recursive: true });
  try {
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { mounted: false, reason: `mount -t tmpfs failed: ${(e.stderr ?? e.message).trim()}` };
  }
  mounted.add(dir);
  return {
    mounted: true,
    dir,
    async unmount() {
      if (!mounted.delete(dir)) return;
      await execFileAsync('umount', [dir]).catch(() => execFileAsync('umount', ['-l', dir]));
    },
  };
}
