// Where a stored instance record says its instance runs, read without its profile
// (instance-records.ts has both forms: the compact array and the object).

/**
 * Where a stored record (either form) says its instance runs, and at which generation, without
 * its profile: undefined for a text that is not a record.
 */
export function recordPlacement(
  json: string,
): { readonly host: string; readonly generation: number } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  const [host, generation] = Array.isArray(parsed)
    ? [parsed[1], parsed[2]]
    : parsed !== null && typeof parsed === 'object'
      ? [(parsed as { host?: unknown }).host, (parsed as { generation?: unknown }).generation]
      : [undefined, undefined];
  return typeof host === 'string' ? { host, generation: Number(generation) || 0 } : undefined;
}
