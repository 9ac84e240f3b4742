import { runCli } from '../../common/src/cli.js';
import { parseConfigFlags } from '../../common/src/cli-flags.js';
import { UsageError } from '../../common/src/errors.js';
import { createLogger } from '../../common/src/logger.js';
import { Ec2Provider } from './aws/ec2-provider.js';
import { provisionCluster, recordedSetup, teardownCluster, teardownWorker } from './commands.js';
import { loadProvisionConfig, provisionConfigSchema } from './config.js';
import { AwsUnauthorizedError } from './aws/aws-errors.js';
import { confirmLaunches } from './confirm.js';
import { createProvider, createWorkerProvider } from './create-provider.js';
import { formatProvisionReport, formatTeardownReport } from './report.js';

const HELP = `Usage: npm run provision -- [options]
       npm run teardown -- [options]

provision  start the cluster's model containers (keeping healthy ones), wait until each answers
           its health path, and write the inventory to the state file
teardown   stop every container of the cluster and clear the inventory (--worker: one worker)

While an orchestrator runs on this machine over the state file, it owns the inventory: provision
and teardown hand it their changes through its admin API (ORCH_ADMIN_TOKEN, its token, in the
environment) and leave the file to it. It launches each missing worker w1..wN as recorded
(provision refuses settings that would make workers otherwise), drains each one leaving before
releasing it, and keeps the workers its machine autoscaler launched. Without the token, stop it
first; --reset is refused while it runs.

Options (flags override PROVISION_* environment variables, which override --config):
  --cluster <name>              cluster name                           default local
  --provider <name>             where workers come from: local, aws    default local
  --runtime <name>              process, or docker (compose-started)   default process
  --worker-image <image>        model image for --runtime docker       default inference-worker:latest
  --workers <n>                 number of workers                      default 2 (aws: 4)
  --containers-per-worker <n>   containers on each worker              default 2
  --host <addr>                 address containers listen on           default 127.0.0.1
  --base-port <port>            port of w1's first container           default 5000
  --port-stride <n>             worker k uses base+(k-1)*stride+i      default 100
  --state-path <file>           cluster state file                     default status/state.json
  --work-ms <ms>                simulated inference time (WORK_MS)     default 0
  --enable-crash-api            let containers expose the crash API    default off
  --predict-path <path>         path /new_request is sent to           default /run_model
  --health-path <path>          path probed, healthy = any 2xx         default /health
  --cpus <n>                    CPU cores per model container          default no limit
  --memory-mb <MiB>             memory limit per model container       default no limit
  --gpus <n|all>                GPUs per container (NVIDIA toolkit)    default none
  --health-timeout-ms <ms>      time for all to become healthy         default 30000
  --log-level <level>           JSON log on stderr                     default warn

AWS (--provider aws; credentials from the standard chain: env, profile, SSO):
  --ssh-cidr <cidr>             who may SSH to the workers (required)  e.g. 203.0.113.7/32
  --orchestrator-cidr <cidr>    who may reach the model ports          default the ssh cidr
  --region <name>               AWS region                             default AWS_REGION
  --instance-type <type>        worker instance type                   default t3.small
  --ami-id <ami>                worker image                           default newest Ubuntu 24.04
  --root-volume-gb <n>          root volume (gp3, encrypted), GiB      default 20
  --key-name <name>             existing key pair (with --ssh-key-path) default: create one
  --ssh-key-path <file>         its private key                        default status/keys/<cluster>.pem
  --ssh-user <user>             the AMI's SSH user                     default ubuntu
  --ssh-port <port>             the workers' SSH port                  default 22
  --health-via <how>            direct, or ssh (a tunnel: only SSH open) default direct
                                (ssh with --with-orchestrator)
  --upload-image                copy --worker-image (and --orchestrator-image) from this
                                machine's Docker over SSH (docker save | docker load)
                                instead of pulling it
  --address-type <type>         public, or private (same VPC)          default public
  --ssh-host-key-check <bool>   verify host keys from console output   default true
  --with-orchestrator           also run the orchestrator, on an instance of its own;
                                the model ports then open to it alone
  --client-cidr <cidr>          who may reach the orchestrator         required with it
  --orchestrator-image <image>  its image (build:orchestrator-image)   default inference-orchestrator:latest
  --orchestrator-port <port>    its port                               default 8080
  --orchestrator-instance-type <type>
                                its instance type                      default t3.small
  --orchestrator-config <file>  its JSON config (client keys, TLS, rates; not host, port,
                                statePath), checked here, uploaded root-only with the TLS
                                files it names; a re-run where only these changed sends it
                                SIGHUP instead of restarting it
  --allow-world-open            allow 0.0.0.0/0 in the cidrs above
  --launch-timeout-ms <ms>      time to run and answer                 default 900000
  --aws-endpoint <url>          EC2-compatible endpoint (LocalStack)
  --dry-run                     with provision: print the plan and check permissions, create nothing
  --yes                         launch without asking (on a terminal, provision shows the
                                instances it would launch and asks; elsewhere it refuses)
  --config <file>               JSON file with any of the keys above (camelCase)
  --worker <id>                 with teardown: take down this worker only (w2), drained first
                                by a running orchestrator
  --reset                       delete the state file first, even one that is not valid
  --json                        print the result as JSON instead of a table
  --help                        show this text
`;

const configKeys = Object.keys(provisionConfigSchema.shape);

runCli(async () => {
  const parsed = parseConfigFlags(process.argv.slice(2), configKeys, {
    switches: ['reset', 'json', 'dry-run', 'yes'],
    booleanKeys: ['enableCrashApi', 'allowWorldOpen', 'uploadImage', 'withOrchestrator'],
    strings: ['worker'],
  });
  const command = parsed.positionals;
  if (parsed.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (command.length !== 1 || (command[0] !== 'provision' && command[0] !== 'teardown')) {
    throw new UsageError(`expected one command, provision or teardown; got ${command.join(' ') || 'none'} (see --help)`);
  }
  let flags: Record<string, unknown> = { ...parsed.config };
  if (command[0] === 'teardown' && flags.runtime === undefined && flags.provider === undefined) {
    // Tear down what was provisioned, whatever the defaults are.
    const { statePath } = loadProvisionConfig({ file: parsed.configFile, env: process.env, flags });
    flags = { ...(await recordedSetup(statePath)), ...flags };
  }
  const config = loadProvisionConfig({ file: parsed.configFile, env: process.env, flags });
  const logger = createLogger('provisioning', config.logLevel, process.stderr);
  const say = (line: string): void => void process.stderr.write(`[provision] ${line}\n`);
  const provider = createProvider(config, logger, { env: process.env, say });
  const reset = parsed.switches.reset === true;
  const worker = parsed.strings.worker;
  if (worker !== undefined && (command[0] !== 'teardown' || reset)) throw new UsageError('--worker goes with teardown, without --reset');
  // The orchestrator's own variable, not a flag: a flag would show in `ps`.
  const handover = { adminToken: process.env.ORCH_ADMIN_TOKEN, say };

  if (parsed.switches['dry-run']) {
    if (command[0] !== 'provision' || !(provider instanceof Ec2Provider)) throw new UsageError('--dry-run goes with provision --provider aws');
    const plan = await provider.plan();
    process.stdout.write(`plan for cluster "${config.cluster}" (dry run: nothing was created)\n${plan.steps.map((s) => `  ${s}`).join('\n')}\n`);
    if (plan.denied.length > 0) throw new AwsUnauthorizedError(plan.denied.join(', ec2:'));
    process.stdout.write('permissions: every action above is allowed (checked with DryRun)\n');
    return 0;
  }

  if (command[0] === 'teardown') {
    const report = worker
      ? await teardownWorker(config, worker, { ...handover, workerProvider: createWorkerProvider(config, logger, { env: process.env, say }) })
      : await teardownCluster(config, { ...handover, provider, reset });
    for (const warning of report.warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write(parsed.switches.json ? JSON.stringify(report, null, 2) + '\n' : formatTeardownReport(report));
    return 0;
  }

  // Ctrl-C stops what this run started instead of leaving half a cluster; a second one kills us outright.
  const interrupt = new AbortController();
  process.once('SIGINT', () => interrupt.abort());
  const report = await provisionCluster(config, {
    ...handover,
    provider,
    reset,
    // The cost guard: a person confirms the launch before anything (key pair, group) is created.
    ...(provider instanceof Ec2Provider && !parsed.switches.yes
      ? { confirm: async () => confirmLaunches(config.cluster, await provider.plan(), { input: process.stdin, output: process.stderr }) }
      : {}),
    signal: interrupt.signal,
    onProgress: (healthy, total) => process.stderr.write(`[provision] ${healthy}/${total} containers healthy\n`),
  });
  for (const warning of report.warnings) process.stderr.write(`warning: ${warning}\n`);
  process.stdout.write(parsed.switches.json ? JSON.stringify(report, null, 2) + '\n' : formatProvisionReport(report));
  return 0;
});
