import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { ScalingDecision } from '../../status/src/schema.js';
import type { ScaleRule } from './config.js';
import type { ContainerManager } from './container-manager.js';
import type { Container, ContainerPool } from './container-pool.js';

export type ScalingPolicy = 'none' | 'requests' | 'concurrency' | 'rules';

export interface AutoscalerOptions {
  policy: ScalingPolicy;
  min: number;
  max: number;
  /** Fewest containers a worker that is up keeps: scale-in never takes one below it. (The most is the container manager's.) */
  minPerWorker: number;
  /** Containers added or removed per decision at most. */
  maxStep: number;
  /** `requests`: the window over which forwarded requests are counted, and the decision period. */
  windowMs: number;
  /** `requests`: desired = floor(requests in the window / requestsPerContainer) + 1. */
  requestsPerContainer: number;
  /** `concurrency` and `rules`: the decision period. */
  intervalMs: number;
  /** `rules`: user-defined rules. */
  rules: readonly ScaleRule[];
  /** `concurrency`: desired = ceil((in flight + queued) / targetConcurrency). */
  targetConcurrency: number;
  /** `concurrency`: scale in only to the highest desired count seen over this window. */
  stabilizationMs: number;
  /** Least time between a scale-out and the next one, and between a scale-in and the next one. */
  scaleUpCooldownMs: number;
  scaleDownCooldownMs: number;
}

export interface AutoscalerSources {
  pool: ContainerPool;
  manager: Pick<ContainerManager, 'scaleOut' | 'drainAndRemove'>;
  /** Requests forwarded since start (health, status and admin calls are not forwarded). */
  forwarded(): number;
  /** Requests waiting for a container. */
  queued(): number;
  /** p90 of request latencies over the last `windowMs`; null without requests. */
  p90LatencyMs(windowMs: number): number | null;
  log: Logger;
  now?: () => number;
}

/** Whether a container counts toward the current size: not draining, and not gone from its runtime. */
const counts = (c: Container): boolean => !c.draining && c.health !== 'down';

/** Decisions kept for the status. */
const DECISIONS_KEPT = 20;

/**
 * Follows the load with the number of containers, by one of two policies: the seeds' `requests`
 * rule over fixed windows, or Knative-style `concurrency` with immediate scale-out and a
 * stabilization window before scale-in (so a dip in steady load does not remove a container that
 * is needed again a moment later). Bounded by min/max, maxStep and cooldowns; every decision that
 * changes something, or that a bound or cooldown held back, is kept with its reason.
 */
export class Autoscaler extends ControlLoop {
  readonly options: AutoscalerOptions;
  readonly decisions: ScalingDecision[] = [];
  /** Decisions by action since the start (`decisions` keeps only the latest). */
  readonly decisionCounts = { 'scale-out': 0, 'scale-in': 0, none: 0 };
  paused = false;
  readonly #sources: AutoscalerSources;
  readonly #now: () => number;
  #lastForwarded = 0;
  #lastUp = -Infinity;
  #lastDown = -Infinity;
  /** `concurrency`: (time, desired) samples within the stabilization window. */
  #samples: Array<{ at: number; desired: number }> = [];
  /** `rules`: what each tick saw, kept for the longest rule window. */
  #observed: Array<{ at: number; forwarded: number; queued: number; inFlight: number }> = [];
  /** Scale-outs and scale-ins under way: decisions do not wait for containers to start or drain. */
  readonly #actions = new Set<Promise<void>>();

  constructor(sources: AutoscalerSources, options: AutoscalerOptions) {
    super('autoscaler', options.policy === 'requests' ? options.windowMs : options.intervalMs, sources.log);
    this.#sources = sources;
    this.options = options;
    this.#now = sources.now ?? performance.now.bind(performance);
  }

  /** Containers that count: in rotation, starting, or failed and about to be replaced; not draining. */
  current(): number {
    let n = 0;
    for (const c of this.#sources.pool.containers()) if (counts(c)) n++;
    return n;
  }

  /** One decision by the policy. */
  override async tick(): Promise<void> {
    const forwarded = this.#sources.forwarded();
    const inWindow = forwarded - this.#lastForwarded;
    this.#lastForwarded = forwarded;
    if (this.paused || this.options.policy === 'none') return;
    const current = this.current();
    let desired: number;
    let reason: string;
    if (this.options.policy === 'rules') {
      [desired, reason] = this.#byRules(current, forwarded);
    } else if (this.options.policy === 'requests') {
      desired = Math.floor(inWindow / this.options.requestsPerContainer) + 1;
      reason = `${inWindow} requests in the last ${this.options.windowMs / 1000} s / ${this.options.requestsPerContainer} per container + 1 = ${desired}`;
    } else {
      const load = this.#sources.pool.inFlightTotal() + this.#sources.queued();
      const raw = Math.ceil(load / this.options.targetConcurrency);
      const now = this.#now();
      this.#samples = this.#samples.filter((s) => now - s.at < this.options.stabilizationMs);
      this.#samples.push({ at: now, desired: raw });
      const stable = Math.max(...this.#samples.map((s) => s.desired));
      desired = raw >= current ? raw : stable;
      reason =
        raw >= current
          ? `${load} in flight or queued / target ${this.options.targetConcurrency} = ${raw}`
          : `${load} in flight or queued wants ${raw}, but ${stable} was wanted within the last ${this.options.stabilizationMs / 1000} s`;
    }
    this.scaleTo(desired, `${this.options.policy}: ${reason}`);
  }

  /** Resolves when the scale-outs and scale-ins under way are done. */
  async settled(): Promise<void> {
    await Promise.all(this.#actions);
  }

  protected override async onStop(): Promise<void> {
    await this.settled();
  }

  /** The first matching scale-out rule, else the first matching scale-in rule; no match keeps the count. */
  #byRules(current: number, forwarded: number): [number, string] {
    const now = this.#now();
    const longest = Math.max(...this.options.rules.map((r) => r.windowMs));
    // One period more than the longest window, so a sample from just before each window's start remains.
    this.#observed = this.#observed.filter((o) => now - o.at <= longest + this.options.intervalMs);
    this.#observed.push({ at: now, forwarded, queued: this.#sources.queued(), inFlight: this.#sources.pool.inFlightTotal() });
    const matches = this.options.rules
      .map((rule, index) => ({ rule, index, value: this.#metric(rule, now) }))
      .filter(({ rule, value }) => value !== null && (rule.op === '>' ? value > rule.threshold : value < rule.threshold));
    const hit = matches.find((m) => m.rule.action === 'scale-out') ?? matches.find((m) => m.rule.action === 'scale-in');
    if (!hit) return [current, 'no rule matched'];
    const { rule, index, value } = hit;
    const desired = rule.action === 'scale-out' ? current + rule.by : current - rule.by;
    const shown = Number.isInteger(value) ? value : value!.toFixed(1);
    return [desired, `rule ${index + 1}: ${rule.metric} ${shown} ${rule.op} ${rule.threshold} over ${rule.windowMs / 1000} s, ${rule.action} by ${rule.by}`];
  }

  #metric(rule: ScaleRule, now: number): number | null {
    const inWindow = this.#observed.filter((o) => now - o.at <= rule.windowMs);
    switch (rule.metric) {
      case 'requests': {
        // Unknown until the observations cover the whole window.
        const before = this.#observed.findLast((o) => now - o.at >= rule.windowMs);
        return before ? inWindow.at(-1)!.forwarded - before.forwarded : null;
      }
      case 'queueLength':
        return inWindow.reduce((n, o) => n + o.queued, 0) / inWindow.length;
      case 'inFlight':
        return inWindow.reduce((n, o) => n + o.inFlight, 0) / inWindow.length;
      case 'p90LatencyMs':
        return this.#sources.p90LatencyMs(rule.windowMs);
    }
  }

  /** Bring the count within [min, max], and every worker up to minPerWorker, at once (on start). */
  async enforceBounds(): Promise<void> {
    const current = this.current();
    const { pool } = this.#sources;
    const short = [...pool.workers()]
      .filter((w) => w.state !== 'down')
      .reduce((n, w) => n + Math.max(0, this.options.minPerWorker - this.#countOn(w.id)), 0);
    // Placement fills the emptiest workers first, so the shortfall lands where it is.
    const wanted = Math.max(this.options.min, current + short);
    if (current < wanted) this.scaleTo(wanted, `below the minimum of ${this.options.min} (${this.options.minPerWorker} per worker)`, { ignoreCooldown: true });
    else if (current > this.options.max) this.scaleTo(this.options.max, `above the maximum of ${this.options.max}`, { ignoreCooldown: true });
    await this.settled();
  }

  #countOn(workerId: string): number {
    return this.#sources.pool.onWorker(workerId).filter(counts).length;
  }

  /**
   * Decide a move toward `wanted` (clamped to [min, max], at most maxStep, after cooldowns) and
   * start it: containers started where placement says, or idle ones drained and removed, in the
   * background (see settled()). Starting containers count as current, so the next decision does
   * not ask for them again.
   */
  scaleTo(wanted: number, reason: string, options: { ignoreCooldown?: boolean } = {}): ScalingDecision {
    const current = this.current();
    const bounded = Math.min(this.options.max, Math.max(this.options.min, wanted));
    const step = Math.max(-this.options.maxStep, Math.min(this.options.maxStep, bounded - current));
    const now = this.#now();
    let action: ScalingDecision['action'] = step > 0 ? 'scale-out' : step < 0 ? 'scale-in' : 'none';
    let why = reason;
    if (bounded !== wanted) why += `; bounded to [${this.options.min}, ${this.options.max}]`;
    if (Math.abs(bounded - current) > this.options.maxStep) why += `; at most ${this.options.maxStep} per decision`;
    if (!options.ignoreCooldown && action === 'scale-out' && now - this.#lastUp < this.options.scaleUpCooldownMs) {
      why += `; held: scale-out cooldown`;
      action = 'none';
    }
    if (!options.ignoreCooldown && action === 'scale-in' && now - this.#lastDown < this.options.scaleDownCooldownMs) {
      why += `; held: scale-in cooldown`;
      action = 'none';
    }
    const decision: ScalingDecision = {
      at: new Date().toISOString(),
      policy: this.options.policy,
      current,
      desired: action === 'none' ? current : current + step,
      action,
      reason: why,
    };
    // A steady "nothing to do" is not worth keeping; a change, or one held back, is.
    if (action !== 'none' || bounded !== current) this.#record(decision);
    if (action === 'none') return decision;
    if (action === 'scale-out') this.#lastUp = now;
    else this.#lastDown = now;
    const work = action === 'scale-out' ? this.#scaleOut(step, why) : this.#scaleIn(-step, why);
    this.#actions.add(work);
    void work.finally(() => this.#actions.delete(work));
    return decision;
  }

  async #scaleOut(n: number, reason: string): Promise<void> {
    const results = await Promise.allSettled(Array.from({ length: n }, () => this.#sources.manager.scaleOut(reason)));
    for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'scale-out failed');
  }

  /** Idle containers only, from the most crowded worker first, highest port first. Never a busy one. */
  async #scaleIn(n: number, reason: string): Promise<void> {
    const { pool } = this.#sources;
    const idle = [...pool.containers()]
      .filter((c) => c.managed && counts(c) && !c.busyWithRuntime && c.inFlight === 0)
      .sort((a, b) => this.#countOn(b.workerId) - this.#countOn(a.workerId) || b.port - a.port);
    const chosen: Container[] = [];
    const left = new Map<string, number>();
    for (const c of idle) {
      if (chosen.length === n) break;
      const count = left.get(c.workerId) ?? this.#countOn(c.workerId);
      if (count <= this.options.minPerWorker) continue;
      left.set(c.workerId, count - 1);
      chosen.push(c);
    }
    if (chosen.length < n) this.log.info({ wanted: n, removable: chosen.length }, 'fewer idle containers above the per-worker minimum than the scale-in asks for');
    // Draining is synchronous, so none of them can take a request from here on.
    const removals = chosen.map((c) => this.#sources.manager.drainAndRemove(c, `scale-in: ${reason}`));
    const results = await Promise.allSettled(removals);
    for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'scale-in removal failed');
  }

  #record(decision: ScalingDecision): void {
    this.decisions.push(decision);
    this.decisionCounts[decision.action]++;
    if (this.decisions.length > DECISIONS_KEPT) this.decisions.shift();
    if (decision.action !== 'none') this.log.info(decision, `autoscaler ${decision.action} ${decision.current} -> ${decision.desired}`);
  }
}
