import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { REPO_ROOT } from './cli.js';

/** Debian's Chromium: playwright-core drives it; no browser is ever downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

/** Run scripts/chromium.sh (installs Debian's chromium when missing; a no-op otherwise). Throws, never skips. */
export function ensureChromium(timeoutMs = 280_000): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(REPO_ROOT, 'scripts/chromium.sh')], { timeout: timeoutMs }, (error, stdout, stderr) =>
      error ? reject(new Error(`scripts/chromium.sh failed (installing needs root): ${`${stdout}${stderr}`.trim() || error.message}`)) : resolve(),
    );
  });
}

/** A headless Chromium that stays on loopback: no background networking, updates or sync. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
