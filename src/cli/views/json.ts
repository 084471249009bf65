// The version of every JSON document the CLI prints of its own (validate, status, apply's
// NDJSON lines): one place, so a change of shape is one bump. Plans, placements and audit
// reports are data formats with their own versions (model/plan.ts, model/placement.ts,
// audit/report.ts).
export const FORMAT_VERSION = '1';

/** A JSON document of the CLI's, versioned; `indent` for documents people read. */
export function jsonDocument(body: Record<string, unknown>, indent?: number): string {
  return JSON.stringify({ formatVersion: FORMAT_VERSION, ...body }, null, indent);
}
