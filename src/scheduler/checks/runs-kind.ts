// The host runs this kind of instance at all (QEMU for VMs, namespaces for containers).
import { no, OK, type StaticCheck } from './check.js';

export const runsKind: StaticCheck = {
  name: 'runs-kind',
  check: (host, _group, image) =>
    host.runs.includes(image.kind) ? OK : no(`runs-no-${image.kind}`),
};
