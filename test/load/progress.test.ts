import { describe, expect, it } from 'vitest';
import { createProgressDisplay, PROGRESS_LINE_INTERVAL_MS } from '../../load/src/progress.js';

describe('createProgressDisplay', () => {
  it('writes a plain line at most every 2 s when the stream is not a terminal', () => {
    const lines: string[] = [];
    const stream = { isTTY: false, write: (line: string) => lines.push(line) } as unknown as NodeJS.WriteStream;
    let nowMs = 0;
    const display = createProgressDisplay(200, stream, () => nowMs);
    display.update({ done: 10, total: 200, failed: 0 });
    nowMs = PROGRESS_LINE_INTERVAL_MS - 1;
    display.update({ done: 20, total: 200, failed: 0 });
    nowMs = PROGRESS_LINE_INTERVAL_MS;
    display.update({ done: 100, total: 200, failed: 3 });
    nowMs += 10;
    display.update({ done: 110, total: 200, failed: 3 });
    display.stop();
    expect(lines).toEqual(['load: 100/200 requests (50%), 3 failed\n']);
  });
});
