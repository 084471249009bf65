// A saved plan (`vfleet plan --out plan.json`) is the Plan as JSON. Reading one back checks its
// shape, so apply never acts on a file that is not a plan of this format. Pure: the caller reads.
import { ACTION_KINDS, PLAN_FORMAT_VERSION, type Plan } from '../model/plan.js';

export function serializePlan(plan: Plan): string {
  return `${JSON.stringify(plan, null, 2)}\n`;
}

export type ParsedPlan = { ok: true; plan: Plan } | { ok: false; reason: string };

export function parsePlan(text: string): ParsedPlan {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (value === null || typeof value !== 'object')
    return { ok: false, reason: 'not a plan object' };
  const v = value as Record<string, unknown>;
  if (v.formatVersion !== PLAN_FORMAT_VERSION) {
    return {
      ok: false,
      reason: `formatVersion ${JSON.stringify(v.formatVersion)}; this vfleet reads "${PLAN_FORMAT_VERSION}"`,
    };
  }
  for (const key of ['id', 'fleet', 'specHash'] as const) {
    if (typeof v[key] !== 'string') return { ok: false, reason: `${key} must be a string` };
  }
  if (typeof v.stateVersion !== 'number' || !Number.isInteger(v.stateVersion)) {
    return { ok: false, reason: 'stateVersion must be a whole number' };
  }
  if (v.destroy !== undefined && v.destroy !== true) {
    return { ok: false, reason: 'destroy must be true when present' };
  }
  if (!Array.isArray(v.actions)) return { ok: false, reason: 'actions must be a list' };
  const kinds = new Set<string>(ACTION_KINDS);
  for (const [i, a] of (v.actions as unknown[]).entries()) {
    const action = a as Record<string, unknown> | null;
    if (
      !action ||
      typeof action.id !== 'string' ||
      !kinds.has(String(action.kind)) ||
      typeof action.instance !== 'string' ||
      typeof action.host !== 'string' ||
      typeof action.generation !== 'number' ||
      !Array.isArray(action.dependsOn)
    ) {
      return { ok: false, reason: `actions[${i}] is not a plan action` };
    }
  }
  const images = v.images as Record<string, unknown> | null | undefined;
  if (images === null || typeof images !== 'object' || Array.isArray(images)) {
    return {
      ok: false,
      reason:
        'images must be an object of the images its actions create from (plans made before vfleet carried them cannot be applied: run vfleet plan again)',
    };
  }
  for (const [i, a] of (v.actions as Array<Record<string, unknown>>).entries()) {
    const needsImage =
      a.kind === 'create' || a.kind === 'start' || a.kind === 'update' || a.kind === 'move';
    const image = typeof a.image === 'string' ? images[a.image] : undefined;
    if (needsImage && (image === null || typeof image !== 'object')) {
      return {
        ok: false,
        reason: `actions[${i}] creates from image ${JSON.stringify(a.image)}, which the plan does not carry`,
      };
    }
  }
  return { ok: true, plan: value as Plan };
}
