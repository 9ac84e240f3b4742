import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { ScalingDecision } from '../../status/src/schema.js';
import type { ScaleRule } from './config.js';
import { StartCancelledError } from '../../runtime/src/errors.js';
import type { Container, ContainerPool } from './container-pool.js';
import type { RuntimeOperations } from './runtime-operations.js';

export type ScalingPolicy = 'none' | 'requests' | 'concurrency' | 'rules';

export interface AutoscalerOptions {
  policy: ScalingPolicy;
  min: number;
  max: number;
  /** Fewest containers a worker that is up keeps: scale-in never takes one below it. (The most is placement's.) */
  minPerWorker: number;
  /** Containers added or removed per decision at most. */
  maxStep: number;
  /** `requests`: the window over which forwarded requests are counted, and the decision period. */
  windowMs: number;
  /** `requests`: desired = floor(requests in the window / requestsPerContainer) + 1. */
  requestsPerContainer: number;
  /**
   * The loop's period at most: `concurrency` and `rules` decide at each pass, and each pass moves
   * toward the latest target. (`requests` passes come a little more often if needed, so that a
   * whole number of them makes a window.)
   */
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
  /** Carries out the steps: the autoscaler only says what it wants. */
  operations: Pick<RuntimeOperations, 'scaleOut' | 'drainAndRemove' | 'room' | 'isCancellableStart' | 'cancelStart' | 'onIdle'>;
  /** Requests forwarded since start (health, status and admin calls are not forwarded). */
  forwarded(): number;
  /** Requests waiting for a container. */
  queued(): number;
  /** p90 of request latencies over the last `windowMs`; null without requests. */
  p90LatencyMs(windowMs: number): number | null;
  log: Logger;
  now?: () => number;
}

/** The count the loop works toward, and who asked for it. */
interface Target {
  /** As asked, before bounds. */
  wanted: number;
  reason: string;
  ignoreCooldown: boolean;
  /** Set by the policy: a pause drops it. Otherwise asked for (admin, the minimum on start): a pause keeps it. */
  byPolicy: boolean;
  /** When it was set, shown on the steps taken toward it later. */
  since: string;
}


/** In rotation: may take requests. */
const serving = (c: Container): boolean => c.health === 'healthy' && !c.draining;

/** Decisions kept for the status. */
const DECISIONS_KEPT = 20;

/**
 * Follows the load with the number of containers, by one of three policies: the seeds' `requests`
 * rule over fixed windows, Knative-style `concurrency` with immediate scale-out and a stabilization
 * window before scale-in (so a dip in steady load does not remove a container that is needed again
 * a moment later), or user `rules`. A decision sets a target; every pass compares it with the
 * containers that count and moves toward it, bounded by min/max, maxStep, cooldowns and what can
 * move now (room on the workers, idle containers), so a step that cannot be taken now is taken by a
 * later pass (Kubernetes' ReplicaSet controller). Every decision that changes something, or that a
 * bound or cooldown held back, is kept with its reason.
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
  /** `requests`: when the current window began. */
  #windowStart: number;
  readonly #periodMs: number;
  #lastUp = -Infinity;
  #lastDown = -Infinity;
  /** `concurrency`: (time, desired) samples within the stabilization window. */
  #samples: Array<{ at: number; desired: number }> = [];
  /** `rules`: what each tick saw, kept for the longest rule window. */
  #observed: Array<{ at: number; forwarded: number; queued: number; inFlight: number }> = [];
  /** What the passes work toward; none once it is reached with nothing still starting. */
  #target: Target | undefined;

  constructor(sources: AutoscalerSources, options: AutoscalerOptions) {
    const periodMs = options.policy === 'requests' ? options.windowMs / Math.ceil(options.windowMs / options.intervalMs) : options.intervalMs;
    super('autoscaler', periodMs, sources.log);
    this.#periodMs = periodMs;
    this.#sources = sources;
    this.options = options;
    this.#now = sources.now ?? performance.now.bind(performance);
    this.#windowStart = this.#now();
  }

  /** Containers that count: in rotation, starting, or failed and about to be replaced; not draining. */
  current(): number {
    let n = 0;
    for (const c of this.#sources.pool.containers()) if (this.#counts(c)) n++;
    return n;
  }

  /** One pass: a decision by the policy when one is due (it sets the target), else a step toward the target. */
  override async tick(): Promise<void> {
    if (this.paused) this.#hold();
    const decided = this.paused ? null : this.#decide();
    if (decided) this.#setTarget(decided.desired, `${this.options.policy}: ${decided.reason}`, { byPolicy: true });
    else if (this.#target) this.#step(true);
  }

  /** Paused: the policy's target goes (a pause holds the count), one asked for stays; a `requests` window restarts. */
  #hold(): void {
    if (this.#target?.byPolicy) this.#target = undefined;
    this.#lastForwarded = this.#sources.forwarded();
    this.#windowStart = this.#now();
  }

  /** What the policy wants now; null without a policy, or (`requests`) before the window closes. */
  #decide(): { desired: number; reason: string } | null {
    const forwarded = this.#sources.forwarded();
    const now = this.#now();
    switch (this.options.policy) {
      case 'none':
        return null;
      case 'requests': {
        // Timers run a little late or early: the pass nearest the window's end closes it.
        if (now - this.#windowStart < this.options.windowMs - this.#periodMs / 2) return null;
        const inWindow = forwarded - this.#lastForwarded;
        this.#lastForwarded = forwarded;
        this.#windowStart = now;
        const desired = Math.floor(inWindow / this.options.requestsPerContainer) + 1;
        return { desired, reason: `${inWindow} requests in the last ${this.options.windowMs / 1000} s / ${this.options.requestsPerContainer} per container + 1 = ${desired}` };
      }
      case 'rules':
        return this.#byRules(this.current(), forwarded, now);
      case 'concurrency': {
        const current = this.current();
        const load = this.#sources.pool.inFlightTotal() + this.#sources.queued();
        const raw = Math.ceil(load / this.options.targetConcurrency);
        this.#samples = this.#samples.filter((s) => now - s.at < this.options.stabilizationMs);
        this.#samples.push({ at: now, desired: raw });
        const stable = Math.max(...this.#samples.map((s) => s.desired));
        return raw >= current
          ? { desired: raw, reason: `${load} in flight or queued / target ${this.options.targetConcurrency} = ${raw}` }
          : { desired: stable, reason: `${load} in flight or queued wants ${raw}, but ${stable} was wanted within the last ${this.options.stabilizationMs / 1000} s` };
      }
    }
  }

  /** The first matching scale-out rule, else the first matching scale-in rule; no match keeps the count. */
  #byRules(current: number, forwarded: number, now: number): { desired: number; reason: string } {
    const longest = Math.max(...this.options.rules.map((r) => r.windowMs));
    // One period more than the longest window, so a sample from just before each window's start remains.
    this.#observed = this.#observed.filter((o) => now - o.at <= longest + this.options.intervalMs);
    this.#observed.push({ at: now, forwarded, queued: this.#sources.queued(), inFlight: this.#sources.pool.inFlightTotal() });
    const matches = this.options.rules
      .map((rule, index) => ({ rule, index, value: this.#metric(rule, now) }))
      .filter(({ rule, value }) => value !== null && (rule.op === '>' ? value > rule.threshold : value < rule.threshold));
    const hit = matches.find((m) => m.rule.action === 'scale-out') ?? matches.find((m) => m.rule.action === 'scale-in');
    if (!hit) return { desired: current, reason: 'no rule matched' };
    const { rule, index, value } = hit;
    const desired = rule.action === 'scale-out' ? current + rule.by : current - rule.by;
    const shown = Number.isInteger(value) ? value : value!.toFixed(1);
    return { desired, reason: `rule ${index + 1}: ${rule.metric} ${shown} ${rule.op} ${rule.threshold} over ${rule.windowMs / 1000} s, ${rule.action} by ${rule.by}` };
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
      .filter((w) => w.state === 'up')
      .reduce((n, w) => n + Math.max(0, this.options.minPerWorker - this.#countOn(w.id)), 0);
    // Placement fills the emptiest workers first, so the shortfall lands where it is.
    const wanted = Math.max(this.options.min, current + short);
    if (current < wanted) this.scaleTo(wanted, `below the minimum of ${this.options.min} (${this.options.minPerWorker} per worker)`, { ignoreCooldown: true });
    else if (current > this.options.max) this.scaleTo(this.options.max, `above the maximum of ${this.options.max}`, { ignoreCooldown: true });
    await this.#sources.operations.onIdle();
  }

  #countOn(workerId: string): number {
    return this.#sources.pool.onWorker(workerId).filter((c) => this.#counts(c)).length;
  }

  /**
   * Whether a container counts toward the current size: not draining, not gone from its runtime,
   * and not on a worker that is leaving (its capacity is replaced before it goes).
   */
  #counts(c: Container): boolean {
    return !c.draining && c.health !== 'down' && this.#sources.pool.worker(c.workerId)?.state !== 'draining';
  }

  /**
   * Make `wanted` the target and take a first step toward it now (see #step); later passes take the
   * rest, whatever held this one back (maxStep, no room, no idle container, containers starting).
   * Returns the decision of this first step. The target stands until it is reached with nothing
   * still starting, or until the policy or another call sets a new one.
   */
  scaleTo(wanted: number, reason: string, options: { ignoreCooldown?: boolean } = {}): ScalingDecision {
    return this.#setTarget(wanted, reason, { byPolicy: false, ignoreCooldown: options.ignoreCooldown });
  }

  #setTarget(wanted: number, reason: string, options: { byPolicy: boolean; ignoreCooldown?: boolean }): ScalingDecision {
    this.#target = { wanted, reason, ignoreCooldown: options.ignoreCooldown ?? false, byPolicy: options.byPolicy, since: new Date().toISOString() };
    return this.#step(false);
  }

  /**
   * The count the current target asks for, bounded as if `upWorkers` workers were up (default: as
   * many as are); without a target (reached, or paused), the count there is.
   */
  wanted(upWorkers?: number): number {
    return this.#target ? this.#bounds(this.#target.wanted, upWorkers).bounded : this.current();
  }

  /** Containers the target wants that no worker has room for now: what more machines would hold. */
  unplaced(): number {
    if (!this.#target) return 0;
    return Math.max(0, this.#bounds(this.#target.wanted).bounded - this.current() - this.#sources.operations.room());
  }

  /** `wanted` within [min, max], the minimum raised to minPerWorker on every worker that is up. */
  #bounds(wanted: number, upWorkers?: number): { bounded: number; floor: number } {
    let up = upWorkers ?? 0;
    if (upWorkers === undefined) for (const w of this.#sources.pool.workers()) if (w.state === 'up') up++;
    const floor = Math.min(this.options.max, Math.max(this.options.min, this.options.minPerWorker * up));
    return { bounded: Math.min(this.options.max, Math.max(floor, wanted)), floor };
  }

  /**
   * One step toward the target, handed to the runtime operations (decisions do not wait for
   * containers to start or drain; see RuntimeOperations.onIdle): at most maxStep
   * containers, after cooldowns; a scale-out no more than the workers have room for now (draining
   * containers hold their slots until removed), a scale-in only what #pickForScaleIn allows.
   * Starting containers count as present, so a scale-out never asks for them twice.
   */
  #step(continued: boolean): ScalingDecision {
    const target = this.#target!;
    const current = this.current();
    const { bounded, floor } = this.#bounds(target.wanted);
    const now = this.#now();
    let why = continued ? `${target.reason} (asked at ${target.since})` : target.reason;
    if (bounded !== target.wanted) {
      why += `; bounded to [${floor}, ${this.options.max}]`;
      if (floor > this.options.min) why += ` (${this.options.minPerWorker} per worker)`;
    }
    if (Math.abs(bounded - current) > this.options.maxStep) why += `; at most ${this.options.maxStep} per decision`;
    const wantedStep = Math.max(-this.options.maxStep, Math.min(this.options.maxStep, bounded - current));
    let toRemove: Container[] = [];
    let step = 0;
    if (wantedStep > 0) {
      if (!target.ignoreCooldown && now - this.#lastUp < this.options.scaleUpCooldownMs) why += '; held: scale-out cooldown';
      else {
        const room = this.#sources.operations.room();
        step = Math.min(wantedStep, room);
        if (room === 0) why += '; held: no worker has room (per-worker maximum or ports; draining containers keep theirs until removed)';
        else if (room < wantedStep) why += `; room for ${room} now`;
      }
    } else if (wantedStep < 0) {
      if (!target.ignoreCooldown && now - this.#lastDown < this.options.scaleDownCooldownMs) why += '; held: scale-in cooldown';
      else {
        toRemove = this.#pickForScaleIn(-wantedStep);
        step = -toRemove.length;
        if (toRemove.length < -wantedStep) {
          why += `; ${toRemove.length === 0 ? 'held: none' : `only ${toRemove.length}`} can go now (the others serve requests, are being replaced, hold the per-worker minimum or are the last in rotation)`;
        }
      }
    }
    if (current + step !== bounded) why += `; later passes go on to ${bounded}`;
    const action: ScalingDecision['action'] = step > 0 ? 'scale-out' : step < 0 ? 'scale-in' : 'none';
    const decision: ScalingDecision = { at: new Date().toISOString(), policy: this.options.policy, current, desired: current + step, action, reason: why };
    // A steady "nothing to do" is not worth keeping; a change, or one held back, is.
    if (action !== 'none' || bounded !== current) this.#record(decision);
    // Reached: nothing more to do once what counts has also finished starting (a start that fails takes its container away again).
    if (bounded === current && ![...this.#sources.pool.containers()].some((c) => this.#counts(c) && c.health === 'starting')) this.#target = undefined;
    if (action === 'none') return decision;
    if (action === 'scale-out') this.#lastUp = now;
    else this.#lastDown = now;
    if (action === 'scale-out') this.#scaleOut(step, why);
    else this.#scaleIn(toRemove, why);
    return decision;
  }

  /** Ask for `n` new containers; each is placed at once and counts as starting from here on. */
  #scaleOut(n: number, reason: string): void {
    for (let i = 0; i < n; i++) {
      this.#sources.operations.scaleOut(reason).catch((error: unknown) => {
        // A scale-in that cancels a start is the autoscaler changing its mind, not a failure.
        if (!(error instanceof StartCancelledError)) this.log.error({ err: error }, 'scale-out failed; the next pass tries again');
      });
    }
  }

  /**
   * Up to `n` containers a scale-in may take now, one pick at a time. Eligible: managed containers
   * that count and that nothing else is replacing or removing (a scale-out still starting is: its
   * start is cancelled), never one that would leave its worker below minPerWorker, and never the
   * last container in rotation while another still counts (the cluster serves until the containers
   * still starting can). Of those:
   * 1. containers not in rotation (starting, or out of it) before ones in rotation, so the serving
   *    capacity is the last to go;
   * 2. from the worker with the most containers at that pick (counted again after each pick, so
   *    the removals spread), highest port first;
   * 3. idle only: when that worker's are all serving requests, the pick waits for a later pass
   *    rather than take from a less crowded worker.
   */
  #pickForScaleIn(n: number): Container[] {
    const { pool, operations } = this.#sources;
    const left = new Map<string, number>();
    const onWorker = (c: Container): number => left.get(c.workerId) ?? this.#countOn(c.workerId);
    const rank = (c: Container): number => (serving(c) ? 1 : 0);
    let remaining = [...pool.containers()].filter((c) => c.managed && this.#counts(c) && (!c.operation || operations.isCancellableStart(c)));
    let counted = this.current();
    let inRotation = [...pool.containers()].filter(serving).length;
    const chosen: Container[] = [];
    while (chosen.length < n) {
      const eligible = remaining.filter((c) => onWorker(c) > this.options.minPerWorker && !(serving(c) && inRotation === 1 && counted > 1));
      const idle = eligible.filter((c) => c.inFlight === 0);
      if (idle.length === 0) break;
      const first = Math.min(...idle.map(rank));
      const crowd = Math.max(...eligible.filter((c) => rank(c) === first).map(onWorker));
      const pick = idle.filter((c) => rank(c) === first && onWorker(c) === crowd).sort((a, b) => b.port - a.port)[0];
      if (!pick) break;
      chosen.push(pick);
      remaining = remaining.filter((c) => c !== pick);
      left.set(pick.workerId, onWorker(pick) - 1);
      counted--;
      if (serving(pick)) inRotation--;
    }
    return chosen;
  }

  /** Take `chosen` away: starting ones have their start cancelled, the others are drained and removed. */
  #scaleIn(chosen: Container[], reason: string): void {
    const { operations } = this.#sources;
    // Both drain synchronously, so none of them can take a request, or count, from here on.
    for (const c of chosen) {
      const removal = operations.isCancellableStart(c) ? operations.cancelStart(c, `scale-in: ${reason}`) : operations.drainAndRemove(c, `scale-in: ${reason}`);
      removal.catch((error: unknown) => this.log.error({ err: error, container: c.id }, 'scale-in removal failed'));
    }
  }

  /** Keep a decision for the status; a hold repeated pass after pass is kept (and logged) once. */
  #record(decision: ScalingDecision): void {
    const last = this.decisions.at(-1);
    if (decision.action === 'none' && last?.action === 'none' && last.current === decision.current && last.reason === decision.reason) return;
    this.decisions.push(decision);
    this.decisionCounts[decision.action]++;
    if (this.decisions.length > DECISIONS_KEPT) this.decisions.shift();
    this.log.info(decision, decision.action === 'none' ? `autoscaler held at ${decision.current}` : `autoscaler ${decision.action} ${decision.current} -> ${decision.desired}`);
  }
}
