#!/usr/bin/env bash
# Audit the production dependencies (package-lock.json) against the registry's advisories.
# Exit 0: no high or critical advisory. Exit 1: there are some; they are listed. Exit 2: the audit
# could not be performed (advisory endpoint unreachable or refusing, no lockfile...): one line on
# stderr saying why, and never a clean result it did not get.
set -euo pipefail
cd "$(dirname "$0")/.."

report=$(mktemp)
errors=$(mktemp)
trap 'rm -f "$report" "$errors"' EXIT

# npm exits 1 both for findings and for failures: the JSON report tells them apart.
npm audit --omit=dev --audit-level=high --json >"$report" 2>"$errors" || true

node --input-type=module - "$report" "$errors" <<'EOF'
import { readFileSync } from 'node:fs';

const [reportPath, errorsPath] = process.argv.slice(2);
const npmError = readFileSync(errorsPath, 'utf8').split('\n').filter((l) => l.startsWith('npm error') && !l.includes('complete log')).at(-1);

function notPerformed(why) {
  process.stderr.write(`audit: could not be performed, so nothing was checked: ${String(why).split('\n')[0]}\n`);
  process.exit(2);
}

let report;
try {
  report = JSON.parse(readFileSync(reportPath, 'utf8'));
} catch {
  notPerformed(npmError ?? 'npm audit printed no report');
}
const counts = report?.metadata?.vulnerabilities;
if (report?.auditReportVersion === undefined || typeof counts?.high !== 'number' || typeof counts?.critical !== 'number') {
  // npm's JSON error: {message, statusCode} for a failed request, {error: {code, summary}} otherwise.
  notPerformed([report?.error?.summary, report?.message, npmError].find((s) => typeof s === 'string' && s.trim() !== '') ?? 'npm audit printed no report');
}

const dependencies = report.metadata.dependencies?.prod ?? report.metadata.dependencies?.total ?? '?';
const serious = Object.values(report.vulnerabilities ?? {}).filter((v) => v.severity === 'high' || v.severity === 'critical');
if (serious.length === 0) {
  const lower = ['moderate', 'low', 'info'].filter((s) => counts[s] > 0).map((s) => `${counts[s]} ${s}`);
  console.log(`audit: no high or critical advisory in ${dependencies} production dependencies${lower.length > 0 ? ` (lower: ${lower.join(', ')}; see npm audit --omit=dev)` : ''}`);
  process.exit(0);
}
console.log(`audit: ${serious.length} production ${serious.length === 1 ? 'dependency has' : 'dependencies have'} high or critical advisories`);
for (const v of serious) {
  const via = v.via.map((x) => (typeof x === 'string' ? `through ${x}` : `${x.title} (${x.url})`)).join('; ');
  const fix = v.fixAvailable === false ? 'no fix available' : v.fixAvailable === true ? 'fix: npm audit fix' : `fix: ${v.fixAvailable.name}@${v.fixAvailable.version}`;
  console.log(`  ${v.name} ${v.range} [${v.severity}]: ${via}; ${fix}`);
}
process.exit(1);
EOF
