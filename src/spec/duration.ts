// The spec's durations (`90s`, `5m`: schemas/fleet.schema.json's `duration`).

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A schema-valid duration (`90s`, `5m`) in milliseconds. */
export function durationMs(text: string): number {
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * (DURATION_UNITS[m[2] as string] as number) : Number.NaN;
}
