// A time limit on a promise that cannot be cancelled (a Redis reply, a child's exit): the
// caller gets a fallback value instead of waiting, and decides what a late promise means.
/** `promise`, or `fallback` after `ms`; the timer is cleared so it keeps no process alive. */
export async function within<T, F>(ms: number, promise: Promise<T>, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
