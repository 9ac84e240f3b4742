import { createInterface } from 'node:readline';
import { AwsUnauthorizedError } from './aws/aws-errors.js';
import type { Ec2Plan } from './aws/plan.js';
import { ConfirmationRequiredError, LaunchNotConfirmedError } from './errors.js';

/** What the cost guard shows of an EC2 plan. */
export type LaunchPlan = Pick<Ec2Plan, 'region' | 'launches' | 'openPorts' | 'denied'>;

/** Where a person would answer (stdin) and read the question (stderr: stdout may carry --json). */
export interface Terminal {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * The cost guard, before anything is created: when the plan launches instances, show them (type,
 * region, open ports) and ask y/N on the terminal. A plan that launches nothing asks nothing.
 * Throws ConfirmationRequiredError without a terminal, LaunchNotConfirmedError on any answer but
 * yes (Enter, Ctrl-C and Ctrl-D included), and AwsUnauthorizedError when the plan's DryRun checks
 * found an action the credentials may not call (no point approving a launch that would fail halfway).
 */
export async function confirmLaunches(cluster: string, plan: LaunchPlan, terminal: Terminal): Promise<void> {
  const count = plan.launches.length;
  if (count === 0) return;
  if (plan.denied.length > 0) throw new AwsUnauthorizedError(plan.denied.join(', ec2:'));
  if (!terminal.input.isTTY || !terminal.output.isTTY) throw new ConfirmationRequiredError(count, plan.region);
  terminal.output.write(formatLaunchPlan(cluster, plan));
  const answer = await ask(`Launch ${count === 1 ? 'this instance' : `these ${count} instances`}? [y/N] `, terminal);
  if (!/^y(es)?$/i.test(answer?.trim() ?? '')) throw new LaunchNotConfirmedError();
}

/** The plan as the question shows it. */
function formatLaunchPlan(cluster: string, plan: LaunchPlan): string {
  const count = plan.launches.length;
  return [
    `Cluster "${cluster}" will launch ${count} EC2 instance${count === 1 ? '' : 's'} in ${plan.region}, billed while they run (npm run teardown ends them):`,
    ...plan.launches.map((launch) => `  ${launch}`),
    'Open to the network:',
    ...plan.openPorts.map((rule) => `  ${rule}`),
    '',
  ].join('\n');
}

/** One line from the terminal; null when it closes first (Ctrl-D, or Ctrl-C, which readline turns into a close). */
function ask(question: string, terminal: Terminal): Promise<string | null> {
  const lines = createInterface({ input: terminal.input, output: terminal.output, terminal: true });
  return new Promise<string | null>((resolve) => {
    let answered = false;
    lines.once('close', () => {
      // Ends the question's line, so the error that follows starts on its own.
      if (!answered) terminal.output.write('\n');
      resolve(null);
    });
    lines.question(question, (answer) => {
      answered = true;
      resolve(answer);
      lines.close();
    });
  });
}
