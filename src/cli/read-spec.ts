// Reading a spec file: the I/O half of `read, then parse` (STYLE.md #7).
import { readFileSync, statSync } from 'node:fs';
import type { Diagnostic } from '../model/diagnostic.js';
import { type LoadedFleet, loadFleet } from '../spec/load-fleet.js';
import { MAX_SPEC_BYTES } from '../spec/source-text.js';

export function readAndLoadFleet(file: string): LoadedFleet {
  const failed = (message: string): LoadedFleet => {
    const diagnostic: Diagnostic = {
      severity: 'error',
      code: 'read-error',
      message,
      file,
      line: 1,
      column: 1,
      path: '',
    };
    return { fleet: undefined, document: undefined, diagnostics: [diagnostic] };
  };
  let bytes: Buffer;
  try {
    const stat = statSync(file);
    if (stat.isDirectory()) return failed('is a directory, not a fleet spec file');
    // Refuse before reading a huge file into memory; decodeSource says the same for bytes.
    if (stat.size > MAX_SPEC_BYTES) {
      return failed(
        `the file is ${stat.size} bytes; a fleet spec may be at most ${MAX_SPEC_BYTES} bytes`,
      );
    }
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reasons: Record<string, string> = {
      ENOENT: 'no such file (run vfleet in the folder of your fleet.yaml, or pass -f PATH)',
      EACCES: 'permission denied',
      EISDIR: 'is a directory, not a fleet spec file',
    };
    return failed(`cannot read the file: ${reasons[code ?? ''] ?? code ?? 'unknown error'}`);
  }
  return loadFleet(bytes, file);
}
