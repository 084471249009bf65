// The instance's demand fits in what the host has left: capacity minus what runs there minus its
// standby reserve (failover-reserve.ts) — normal placements never use the reserve, so no
// placement can break a failover scenario. The common reason, and the cheapest: checked first.
import { type DynamicCheck, no, OK } from './check.js';

const INSUFFICIENT_CPU = no('insufficient-cpu');
const INSUFFICIENT_MEMORY = no('insufficient-memory');
const INSUFFICIENT_DISK = no('insufficient-disk');

export const freeCapacity: DynamicCheck = {
  name: 'capacity',
  check: (s, p, h) => {
    const d = p.demand;
    if (s.capCpu[h]! - s.usedCpu[h]! - s.resCpu[h]! < d.cpu) return INSUFFICIENT_CPU;
    if (s.capMem[h]! - s.usedMem[h]! - s.resMem[h]! < d.memory) return INSUFFICIENT_MEMORY;
    if (s.capDisk[h]! - s.usedDisk[h]! - s.resDisk[h]! < d.disk) return INSUFFICIENT_DISK;
    return OK;
  },
};
