// A group spread over a label can only use hosts that carry it.
import { no, OK, type StaticCheck } from './check.js';

const NO_SPREAD_LABEL = no('no-spread-label');

export const carriesSpreadLabel: StaticCheck = {
  name: 'spread-label',
  check: (host, group) =>
    group.placement.spread === undefined || host.labels[group.placement.spread] !== undefined
      ? OK
      : NO_SPREAD_LABEL,
};
