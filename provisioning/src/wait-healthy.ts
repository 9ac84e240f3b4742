import { connect } from 'node:net';
import PQueue from 'p-queue';
import { request } from 'undici';
import { pollUntil } from '../../common/src/poll-until.js';
import { AbortedError, ContainerExitedError, HealthTimeoutError } from './errors.js';

/** A container to check: healthy when its health path answers 2xx (and, if the answer names a container, names `name`). */
export interface HealthTarget {
  name: string;
  host: string;
  port: number;
}

/** Outcome of one health probe; `reason` says why it is not healthy, for progress and errors. */
export type HealthProbe = { ok: true } | { ok: false; reason: string };

/** One `GET healthPath`. Another container's id in the answer is not healthy. @param timeoutMs @default 2000 */
export async function probeHealth(target: HealthTarget, healthPath: string, timeoutMs = 2_000): Promise<HealthProbe> {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  try {
    // reset: no keep-alive, so no pooled socket outlives the probe (and holds a stopped container's port in FIN-WAIT).
    const res = await request(`http://${host}:${target.port}${healthPath}`, { reset: true, signal: AbortSignal.timeout(timeoutMs) });
    return judgeHealth(target, res.statusCode, await res.body.text());
  } catch (error) {
    return { ok: false, reason: describeFailure(error, timeoutMs) };
  }
}

/**
 * Whether a health answer (status and body) is `target` being healthy, however it was fetched:
 * any 2xx. Where the app reports an identity (a JSON object with a `container` field, as the
 * bundled worker does) it must be `target`'s; most apps report none, and then the status decides.
 */
export function judgeHealth(target: HealthTarget, status: number, body: string): HealthProbe {
  if (status < 200 || status > 299) return { ok: false, reason: `answered HTTP ${status}` };
  const identity = reportedIdentity(body);
  if (identity !== undefined && identity !== target.name) return { ok: false, reason: `answered as container ${JSON.stringify(identity)}` };
  return { ok: true };
}

/** The `container` field of a JSON object body; undefined when the body is no such object. */
function reportedIdentity(body: string): unknown {
  if (!body.trimStart().startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return Object.hasOwn(parsed, 'container') ? parsed.container : undefined;
  } catch {
    return undefined;
  }
}

/** Whether something accepts TCP connections on host:port (within `timeoutMs`). */
export function portAnswers(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (answers: boolean): void => {
      socket.destroy();
      resolve(answers);
    };
    socket.once('connect', () => done(true)).once('error', () => done(false)).once('timeout', () => done(false));
  });
}

/**
 * Probes in flight at once. A round over a large cluster would otherwise open a connection (on
 * EC2 through SSH, a tunnel) to every container at the same moment; 16 still checks 200
 * containers in a few seconds.
 */
export const PROBE_CONCURRENCY = 16;

/** One probe of each target, at most `concurrency` at once; the outcomes in the targets' order. */
export function probeAll(
  targets: readonly HealthTarget[],
  probe: (target: HealthTarget) => Promise<HealthProbe>,
  concurrency = PROBE_CONCURRENCY,
): Promise<HealthProbe[]> {
  return new PQueue({ concurrency }).addAll(targets.map((target) => () => probe(target)));
}

function describeFailure(error: unknown, timeoutMs: number): string {
  const { code, name, message } = error as { code?: string; name?: string; message?: string };
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  return message ?? String(error);
}

export interface WaitHealthyOptions {
  /** Path probed on every target (the worker template's contract). */
  healthPath: string;
  /** One probe of a target, answering within `timeoutMs`. @default probeHealth: a direct `GET healthPath` */
  probe?: (target: HealthTarget, timeoutMs: number) => Promise<HealthProbe>;
  /** Give up after this long, in ms. */
  timeoutMs: number;
  /** Pause between rounds of probes, in ms. @default 250 */
  intervalMs?: number;
  /** Called with the number of healthy targets whenever it changes (and once at first). */
  onProgress?: (healthy: number, total: number) => void;
  /** Why the target's process is gone (so waiting for it is pointless), or null while it runs. */
  exited?: (target: HealthTarget) => Promise<string | null>;
  /** The error past `timeoutMs`, given each target still not healthy and why. @default HealthTimeoutError */
  onTimeout?: (pending: Array<{ target: HealthTarget; reason: string }>) => Error;
  signal?: AbortSignal;
}

/**
 * Resolves once every target is healthy, probing those not yet healthy each round (PROBE_CONCURRENCY
 * at once). Throws `onTimeout`'s error (HealthTimeoutError) naming the others after `timeoutMs`,
 * ContainerExitedError as soon as one's process is gone, AbortedError on `signal`.
 */
export async function waitHealthy(targets: HealthTarget[], options: WaitHealthyOptions): Promise<void> {
  const { timeoutMs, signal } = options;
  const probe = options.probe ?? ((target, probeTimeoutMs) => probeHealth(target, options.healthPath, probeTimeoutMs));
  const onTimeout =
    options.onTimeout ?? ((pending) => new HealthTimeoutError(timeoutMs, pending.map(({ target, reason }) => `${target.name}: ${reason}`)));
  const pending = new Map(targets.map((target) => [target.name, target]));
  const reasons = new Map<string, string>();
  const deadline = performance.now() + timeoutMs;
  let reported = -1;
  try {
    await pollUntil(
      async () => {
        const round = [...pending.values()];
        // A probe never outlasts the wait by much: at most 2 s, less near the deadline.
        const probeTimeoutMs = Math.max(100, Math.min(2_000, deadline - performance.now()));
        const probes = await probeAll(round, (target) => probe(target, probeTimeoutMs));
        round.forEach((target, i) => {
          const outcome = probes[i]!;
          if (outcome.ok) pending.delete(target.name);
          else reasons.set(target.name, outcome.reason);
        });
        const healthy = targets.length - pending.size;
        if (healthy !== reported) {
          reported = healthy;
          options.onProgress?.(healthy, targets.length);
        }
        if (pending.size === 0) return true;
        for (const target of pending.values()) {
          const why = await options.exited?.(target);
          if (why) throw new ContainerExitedError(target.name, why);
        }
        return undefined;
      },
      {
        timeoutMs,
        intervalMs: options.intervalMs ?? 250,
        signal,
        onTimeout: () => onTimeout([...pending.values()].map((target) => ({ target, reason: reasons.get(target.name) ?? 'not probed' }))),
      },
    );
  } catch (error) {
    if (signal?.aborted) throw new AbortedError();
    throw error;
  }
}
