import { describe, expect, it } from 'vitest';
import { scaleInventory } from '../../bench/src/scale.js';
import { stateFileSchema } from '../../status/src/schema.js';

describe('the scale scenario’s state file', () => {
  it('lists the containers, unmanaged, four on each worker, in a file the status store accepts', () => {
    const state = stateFileSchema.parse(scaleInventory([5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008]));
    expect(state.workers.map((w) => w.id)).toEqual(['w1', 'w2']);
    expect(state.containers.map((c) => `${c.workerId}/${c.id}:${c.port}`)).toEqual([
      'w1/w1-c1:5001',
      'w1/w1-c2:5002',
      'w1/w1-c3:5003',
      'w1/w1-c4:5004',
      'w2/w2-c1:5005',
      'w2/w2-c2:5006',
      'w2/w2-c3:5007',
      'w2/w2-c4:5008',
    ]);
    expect(state.containers.every((c) => !c.managed && c.host === '127.0.0.1')).toBe(true);
  });
});
