/**
 * Runs tasks side by side under one signal: the first failure aborts it for the others, every task
 * settles before this returns (nothing is left running, temp files are gone), and then that first
 * failure is thrown — the others' errors are only its consequences. `signal` aborting aborts all.
 */
export async function allOrCancel(signal: AbortSignal, tasks: readonly ((signal: AbortSignal) => Promise<unknown>)[]): Promise<void> {
  const local = new AbortController();
  const forward = (): void => local.abort(signal.reason);
  signal.addEventListener('abort', forward, { once: true });
  let first: { readonly error: unknown } | undefined;
  try {
    await Promise.all(
      tasks.map((task) =>
        task(local.signal).catch((error: unknown) => {
          first ??= { error };
          local.abort(error);
        }),
      ),
    );
  } finally {
    signal.removeEventListener('abort', forward);
  }
  if (first !== undefined) throw first.error;
}
