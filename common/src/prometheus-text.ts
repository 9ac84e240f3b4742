/** One sample of the Prometheus text exposition format (version 0.0.4). */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** Metric family name → its TYPE. */
  types: Map<string, string>;
  /** Metric family name → its HELP. */
  help: Map<string, string>;
  /** Sum of the values of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)/y;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/**
 * A strict parser: every line must be a HELP, a TYPE or a sample of a family declared before it,
 * with well-formed labels and a numeric value. Throws naming the first bad line.
 */
export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error('the exposition must end with a newline');
  lines.pop();
  for (const [i, line] of lines.entries()) {
    const bad = (why: string): Error => new Error(`line ${i + 1} ${why}: ${JSON.stringify(line)}`);
    if (line === '') continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw bad('has an unknown type');
        if (types.has(name)) throw bad('declares a type twice');
        types.set(name, rest);
      } else help.set(name, rest);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw bad('is not a sample');
    const [, name, labelText = '', valueText] = m as unknown as [string, string, string | undefined, string];
    const family = [name, name.replace(/_(bucket|sum|count|total|created)$/, '')].find((n) => types.has(n));
    if (!family) throw bad('has no TYPE before it');
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < labelText.length) {
      const at = LABEL.lastIndex;
      const l = LABEL.exec(labelText);
      if (!l || l.index !== at) throw bad('has malformed labels');
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    // Go's ParseFloat, which Prometheus uses, takes NaN and Inf in any case.
    const special = /^([+-]?)(inf|infinity|nan)$/i.exec(valueText);
    const value = special ? (special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity) : Number(valueText);
    if (Number.isNaN(value) && !special) throw bad('has a value that is not a number');
    samples.push({ name, labels, value });
  }
  return {
    samples,
    types,
    help,
    sum: (name, want = {}) =>
      samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0),
  };
}
