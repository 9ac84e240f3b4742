/** Instructions one target executed per forwarded request, counted by callgrind. */
export interface InstructionCount {
  target: string;
  /** What the target is, in a few words. */
  what: string;
  instructionsPerRequest: number;
}

export interface InstructionsResult {
  valgrind: string;
  warmUp: number;
  counted: number;
  connections: number;
  counts: InstructionCount[];
}

const thousands = (n: number): string => `${Math.round(n / 1000).toLocaleString('en-US')}k`;

/** The instruction counts as a section of BENCHMARKS.md: each target's count and its multiple of HAProxy's. */
export function instructionsSection(r: InstructionsResult): string[] {
  const haproxy = r.counts.find((c) => c.target === 'haproxy')?.instructionsPerRequest;
  return [
    '## Where a request\'s CPU goes: instructions per request',
    '',
    `CPU times on 2 shared cores move by tens of percent from run to run; instruction counts do not. Each target below ran under`,
    `callgrind (${r.valgrind}) over the same ${r.counted.toLocaleString('en-US')} requests, after ${r.warmUp.toLocaleString('en-US')} unmeasured ones,`,
    `${r.connections} at a time over the same 8 backends (S = 0, so nothing queues), with health probes, status writes and scaling an hour apart:`,
    'user-space instructions of every thread of the process, per request. The kernel\'s share is not in it: every target makes the',
    'same four socket calls per request. "Node" rows are yardsticks built for this (bench/src/node-floor.ts), compiled and run like the',
    'orchestrator. What the profile found and what was cut: [PROFILE.md](PROFILE.md).',
    '',
    '| target | what it is | instructions per request | × HAProxy |',
    '| --- | --- | --- | --- |',
    ...r.counts.map((c) => `| ${c.target} | ${c.what} | ${thousands(c.instructionsPerRequest)} | ${haproxy ? (c.instructionsPerRequest / haproxy).toFixed(1) : '–'} |`),
    '',
  ];
}
