import { afterEach } from 'vitest';
import { recordRefusals, takeRefusals } from './network-guard.js';

// The guard (network-guard.ts) refuses every connection outside 127.0.0.0/8; here a refusal also
// fails the test that caused it, even where the code under test swallowed the connection error.
recordRefusals();
afterEach(() => {
  const refused = takeRefusals();
  if (refused.length > 0) throw new Error(`test network guard refused connections to ${refused.join(', ')}`);
});
