import { createLogger, type Logger } from '../../common/src/logger.js';

/** A logger whose JSON lines land in `lines`; `entries()` parses them (and so fails on a line that is not JSON). */
export function capturingLogger(level = 'info'): { log: Logger; lines: string[]; entries: () => Array<Record<string, unknown>> } {
  const lines: string[] = [];
  const log = createLogger('orchestrator', level, { write: (line: string) => void lines.push(line) });
  const entries = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, entries };
}
