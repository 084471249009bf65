// Turns the bytes of a spec file into text, or says exactly where and why it cannot.
// Pure: the caller reads the file (habit 7, docs/architecture.md: read, then parse).

export const MAX_SPEC_BYTES = 64 * 1024 * 1024;

export type SourceText =
  | { ok: true; text: string }
  | {
      ok: false;
      code: 'too-large' | 'encoding' | 'control-character';
      message: string;
      offset: number;
    };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

export function decodeSource(bytes: Uint8Array): SourceText {
  if (bytes.length > MAX_SPEC_BYTES) {
    return {
      ok: false,
      code: 'too-large',
      message: `the file is ${bytes.length} bytes; a fleet spec may be at most ${MAX_SPEC_BYTES} bytes`,
      offset: 0,
    };
  }
  if (
    bytes.length >= 2 &&
    ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))
  ) {
    return {
      ok: false,
      code: 'encoding',
      message: 'the file is UTF-16; save it as UTF-8',
      offset: 0,
    };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    return {
      ok: false,
      code: 'encoding',
      message: `the file is not valid UTF-8 (byte 0x${(bytes[at] ?? 0).toString(16).padStart(2, '0')} at offset ${at}); save it as UTF-8`,
      offset: utf16OffsetOfByte(bytes, at),
    };
  }
  // YAML allows no C0 control characters but tab, LF and CR; a NUL in particular must never get
  // as far as a value that could reach a command line.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  const control = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
  if (control) {
    const code = control[0].charCodeAt(0);
    return {
      ok: false,
      code: 'control-character',
      message: `control character U+${code.toString(16).toUpperCase().padStart(4, '0')} is not allowed in a fleet spec`,
      offset: control.index,
    };
  }
  return { ok: true, text };
}

/** The byte offset of the first malformed UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    if (i + need >= bytes.length) return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}

/** Where byte `at` falls in the decoded (UTF-16) text of the valid prefix before it. */
function utf16OffsetOfByte(bytes: Uint8Array, at: number): number {
  return utf8.decode(bytes.subarray(0, at)).length;
}
