// "did you mean …?" for unknown keys, enum values and references.
import { distance } from 'fastest-levenshtein';

/** The candidate closest to `wrong`, if it is close enough to be a likely typo. */
export function closest(wrong: string, candidates: Iterable<string>): string | undefined {
  const lower = wrong.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    if (candidate === wrong) continue;
    if (candidate.toLowerCase() === lower) return candidate;
    const d = distance(lower, candidate.toLowerCase());
    if (d < bestDistance || (d === bestDistance && best !== undefined && candidate < best)) {
      best = candidate;
      bestDistance = d;
    }
  }
  // A third of the word may be wrong (at least one edit, at most four): "debain" → "debian",
  // not "web" → "db".
  const allowed = Math.min(4, Math.max(1, Math.floor(wrong.length / 3)));
  return best !== undefined && bestDistance <= allowed ? best : undefined;
}

export function didYouMean(wrong: string, candidates: Iterable<string>): string {
  const hit = closest(wrong, candidates);
  return hit === undefined ? '' : `; did you mean ${JSON.stringify(hit)}?`;
}
