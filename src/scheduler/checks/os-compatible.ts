// A container shares the host's kernel: family, release and arch must match. A VM brings its
// own kernel; only the arch must match, unless the image allows emulation (TCG).
import { no, OK, type StaticCheck } from './check.js';

const ARCH_MISMATCH = no('arch-mismatch');
const OS_MISMATCH = no('os-mismatch');

export const osCompatible: StaticCheck = {
  name: 'os-compatible',
  check: (host, _group, image) => {
    if (image.kind === 'container') {
      if (host.os.arch !== image.os.arch) return ARCH_MISMATCH;
      if (host.os.family !== image.os.family || host.os.release !== image.os.release) {
        return OS_MISMATCH;
      }
      return OK;
    }
    return host.os.arch === image.os.arch || image.allowEmulation ? OK : ARCH_MISMATCH;
  },
};
