import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The Lua script every run uses: POST a small JSON body, print the summary as JSON. */
const SCRIPT = fileURLToPath(new URL('./wrk-post.lua', import.meta.url));

/** What one wrk run measured, from the client's side. */
export interface WrkResult {
  requests: number;
  seconds: number;
  throughputRps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** Socket errors, and answers other than 2xx or 3xx (`status`). */
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
}

/** A wrk run under way: its process (to sample), and its result once done. */
export interface WrkRun {
  pid: number;
  result: Promise<WrkResult>;
}

/** Make sure wrk is installed (scripts/wrk.sh): the client that is not the bottleneck. */
export function ensureWrk(): void {
  execFileSync('bash', ['scripts/wrk.sh'], { stdio: 'inherit' });
}

/** wrk's version as it prints it (`wrk -v`, which exits 1 after printing its usage): e.g. `wrk debian/4.1.0-3+b2`. */
export function wrkVersion(): string {
  const { stdout, error } = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (error) throw error;
  const version = /^wrk \S+/.exec(stdout)?.[0];
  if (!version) throw new Error(`wrk -v printed no version: ${stdout.trim()}`);
  return version;
}

/** `wrk` with one thread keeping `connections` POSTs in flight on `url` for `seconds`. */
export function startWrk(url: string, connections: number, seconds: number): WrkRun {
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '30s', '-s', SCRIPT, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const result = new Promise<WrkResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) return reject(new Error(`wrk exited with ${code} without a summary: ${out.trim()}`));
      const s = JSON.parse(line) as { requests: number; durationUs: number; errors: WrkResult['errors']; latencyUs: WrkResult['latencyMs'] };
      const ms = (us: number): number => us / 1000;
      resolve({
        requests: s.requests,
        seconds: s.durationUs / 1e6,
        throughputRps: s.requests / (s.durationUs / 1e6),
        latencyMs: { p50: ms(s.latencyUs.p50), p90: ms(s.latencyUs.p90), p99: ms(s.latencyUs.p99), max: ms(s.latencyUs.max) },
        errors: s.errors,
      });
    });
  });
  return { pid: child.pid!, result };
}
