// The host carries every label the group's `placement.requireLabels` asks for, with its value.
import { no, OK, type StaticCheck } from './check.js';

const MISSING_LABELS = no('missing-labels');

export const requiredLabels: StaticCheck = {
  name: 'required-labels',
  check: (host, group) => {
    for (const [key, value] of Object.entries(group.placement.requireLabels)) {
      if (host.labels[key] !== value) return MISSING_LABELS;
    }
    return OK;
  },
};
