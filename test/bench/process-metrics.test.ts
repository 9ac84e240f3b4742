import { describe, expect, it } from 'vitest';
import { cpuTimeMs, machineBusyMs } from '../../bench/src/process-metrics.js';

describe('CPU times from /proc', () => {
  it("reads a process's user plus system time, as the process itself counts it", async () => {
    // Some CPU to measure, so user time is well above 0.
    let x = 0;
    for (let i = 0; i < 5e7; i++) x += i % 7;
    expect(x).toBeGreaterThan(0);
    const usage = process.cpuUsage();
    const ms = await cpuTimeMs(process.pid);
    // /proc counts in ticks of 10 ms; cpuUsage in microseconds; the read between them costs a little.
    expect(ms).toBeGreaterThan((usage.user + usage.system) / 1000 - 20);
    expect(ms).toBeLessThan((usage.user + usage.system) / 1000 + 50);
  });

  it("reads the machine's busy time, which only grows", async () => {
    const before = await machineBusyMs();
    let x = 0;
    for (let i = 0; i < 5e7; i++) x += i % 7;
    expect(x).toBeGreaterThan(0);
    expect(await machineBusyMs()).toBeGreaterThan(before);
  });
});
