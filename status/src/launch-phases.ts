import type { LaunchTiming } from './schema.js';

/** A phase of a worker's launch, in the order they happen. */
export type LaunchPhase = 'decision' | 'launch' | 'start' | 'probe';

/** Where a launch's time went, phase by phase in order (ms); no decision phase for a launch no need asked for. */
export function launchPhases(launch: LaunchTiming): Array<{ phase: LaunchPhase; ms: number }> {
  const phases: Array<[LaunchPhase, number | null]> = [['decision', launch.decisionMs], ['launch', launch.launchMs], ['start', launch.startMs], ['probe', launch.probeMs]];
  return phases.flatMap(([phase, ms]) => (ms === null ? [] : [{ phase, ms }]));
}
