import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { Readable } from 'node:stream';
import type { IpPermission, RunInstancesCommandInput, Tag } from '@aws-sdk/client-ec2';
import { AppError } from '../../../common/src/errors.js';
import { pollUntil } from '../../../common/src/poll-until.js';
import { knownHostName } from '../../../runtime/src/known-hosts.js';
import type { SshTarget } from '../../../runtime/src/ssh-connection.js';
import { emptyState, type StateFile, type WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import type { Inventory } from '../inventory.js';
import { sshExec, sshHttpGet } from './ssh-exec.js';
import { instanceLaunch } from './launch.js';
import { RELOADABLE_KEYS } from '../../../orchestrator/src/config.js';
import type { OrchestratorConfigFile } from './orchestrator-config.js';
import { orchestratorUserData } from './user-data.js';

/** Role tag of the orchestrator's instance (the workers' is `worker`). */
export const ORCHESTRATOR_ROLE = 'orchestrator';

/** Where the orchestrator's files live on its instance: one folder per cluster, root's alone (0700). */
export const REMOTE_ROOT = '/opt/inference-orchestrator';

/** The container's view of its state folder (the image's ORCH_STATE_PATH is /state/state.json). */
const CONTAINER_STATE_DIR = '/state';
/** Label on the orchestrator's container: a digest of what it was started with, so a re-run that changes nothing keeps it. */
const DEPLOY_LABEL = 'io.inference-orchestrator.deploy';
/** Longer than the orchestrator's default shutdownTimeoutMs (30 s): `docker stop` lets it drain. */
const STOP_TIMEOUT_S = 40;

/** The orchestrator could not be installed or started on its instance. */
export class OrchestratorDeployError extends AppError {
  constructor(message: string) {
    super('ORCHESTRATOR_DEPLOY_FAILED', message);
  }
}

/** Runs `command` as root: directly when the SSH user is root, else through passwordless sudo (Ubuntu's AMI user). */
export function asRoot(command: string): string {
  return `if [ "$(id -u)" = 0 ]; then ${command}; else sudo -n ${command}; fi`;
}

/** How a caller's errors are made: each step of an upload or a deploy fails with its own typed error. */
export type FailWith = (message: string) => AppError;

/** Waits until Docker answers over SSH (user-data installs it); `what` names the machine in errors. */
export async function waitForDocker(target: SshTarget, what: string, options: { deadline: number; pollMs: number; fail: FailWith }): Promise<void> {
  await pollUntil(
    async () => {
      const ready = await sshExec(target, asRoot('docker info >/dev/null')).catch((error: { code?: string }) => {
        // Not up yet (refused, reset, timed out) is worth waiting for; a refused host key or login is not.
        if (error.code === 'ENGINE_UNREACHABLE') return null;
        throw error;
      });
      return ready?.code === 0 ? true : undefined;
    },
    { timeoutMs: untilDeadline(options.deadline), intervalMs: options.pollMs, onTimeout: () => options.fail(`Docker on ${what} (${target.host}) did not answer over SSH in time`) },
  );
}

/** Milliseconds left until an epoch-ms deadline (none left: 0, one last try). */
function untilDeadline(deadline: number): number {
  return Math.max(0, deadline - Date.now());
}

/** `docker save` here piped over SSH into `docker load` there; resolves with docker load's last line. */
export async function loadImage(target: SshTarget, image: string, what: string, fail: FailWith): Promise<string> {
  const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
  let saveError = '';
  save.stderr.on('data', (chunk: Buffer) => (saveError += chunk.toString('utf8')));
  const saved = new Promise<number | null>((resolve) => save.once('close', resolve));
  const loaded = await sshExec(target, asRoot('docker load'), save.stdout);
  if ((await saved) !== 0) throw fail(`docker save ${image} failed here: ${lastLine(saveError)}`);
  if (loaded.code !== 0) throw fail(`docker load on ${what} failed: ${lastLine(loaded.stderr)}`);
  return lastLine(loaded.stdout);
}

/** Its security group's name. */
export function orchestratorGroupName(cluster: string): string {
  return `${cluster}-orchestrator`;
}

/** What its security group opens: its port to clientCidr, SSH to sshCidr (provisioning delivers the inventory that way). */
export function orchestratorRules(config: ProvisionConfig): IpPermission[] {
  return [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: config.sshCidr!, Description: 'SSH from the operator' }] },
    {
      IpProtocol: 'tcp',
      FromPort: config.orchestratorPort,
      ToPort: config.orchestratorPort,
      IpRanges: [{ CidrIp: config.clientCidr!, Description: 'the orchestrator from its clients' }],
    },
  ];
}

/** RunInstances of the orchestrator's instance: the workers' AMI, key pair and hardening, its own group, type and boot script. */
export function orchestratorLaunch(
  config: ProvisionConfig,
  with_: { ami: { id: string; rootDevice: string }; key: string; groupId: string; tags: Tag[] },
): RunInstancesCommandInput {
  const userData = orchestratorUserData({ cluster: config.cluster, image: config.orchestratorImage, imageSource: config.uploadImage ? 'upload' : 'registry' });
  return instanceLaunch(config, { ...with_, instanceType: config.orchestratorInstanceType, userData });
}

/** Where the deploy puts things on the instance, and what the container sees of them. */
export function remotePaths(cluster: string) {
  const dir = `${REMOTE_ROOT}/${cluster}`;
  return {
    dir,
    /** Mounted at /state in the container. */
    stateDir: `${dir}/state`,
    container: `inference-orchestrator-${cluster}`,
    /** Inside the container. */
    keyPath: `${CONTAINER_STATE_DIR}/keys/workers.pem`,
    knownHostsPath: `${CONTAINER_STATE_DIR}/keys/known_hosts`,
    /** The orchestrator's config file (orchestratorConfig), inside the container. */
    configPath: `${CONTAINER_STATE_DIR}/orchestrator.json`,
    /** Its TLS certificate chain and key, inside the container. */
    tlsCertPath: `${CONTAINER_STATE_DIR}/tls/cert.pem`,
    tlsKeyPath: `${CONTAINER_STATE_DIR}/tls/key.pem`,
    /** On the instance, outside the container: the digest of the config files the running orchestrator was given (at its start or by SIGHUP). */
    configDigestPath: `${dir}/config.sha256`,
  };
}

/**
 * The inventory as the orchestrator on its instance needs it: every worker and container at its
 * private address (same VPC: the workers' group admits the orchestrator's), the worker key and
 * known_hosts at their paths in the container.
 */
export function orchestratorInventory(cluster: string, inventory: Inventory, privateAddresses: ReadonlyMap<string, string>, hostKeyCheck: boolean): StateFile {
  const paths = remotePaths(cluster);
  const addressOf = (workerId: string): string => {
    const address = privateAddresses.get(workerId);
    if (!address) throw new OrchestratorDeployError(`worker ${workerId} has no private address`);
    return address;
  };
  const workers = inventory.workers.map((worker): WorkerRecord => {
    if (worker.runtime.driver !== 'docker' || !worker.runtime.ssh) throw new OrchestratorDeployError(`worker ${worker.id} has no SSH connection`);
    const host = addressOf(worker.id);
    const { knownHostsPath: _local, insecureSkipHostKeyCheck: _skip, ...ssh } = worker.runtime.ssh;
    return {
      ...worker,
      host,
      runtime: {
        driver: 'docker',
        ssh: { ...ssh, host, privateKeyPath: paths.keyPath, ...(hostKeyCheck ? { knownHostsPath: paths.knownHostsPath } : { insecureSkipHostKeyCheck: true }) },
      },
    };
  });
  return {
    ...emptyState(cluster, 'provisioning'),
    workers,
    containers: inventory.containers.map((container) => ({ ...container, host: addressOf(container.workerId) })),
  };
}

/** The lines of a known_hosts text for the hosts `renames` names, under their new names (the workers' keys, at their private addresses). */
export function renameKnownHosts(text: string, renames: ReadonlyMap<string, string>): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([name]) => name !== undefined && renames.has(name))
    .map(([name, ...key]) => [renames.get(name!)!, ...key].join(' '));
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** `knownHostName` for each worker: its name as the operator reaches it -> as the orchestrator does. */
export function knownHostRenames(workers: WorkerRecord[], privateAddresses: ReadonlyMap<string, string>, sshPort: number): Map<string, string> {
  return new Map(workers.map((w) => [knownHostName(w.host, sshPort), knownHostName(privateAddresses.get(w.id) ?? w.host, sshPort)]));
}

/** What goes onto the instance. */
export interface OrchestratorPayload {
  inventory: StateFile;
  /** The workers' SSH private key (the orchestrator replaces and adds containers with it). */
  workerKey: Buffer;
  /** The workers' host keys under their private addresses; null without host-key checking. */
  knownHosts: string | null;
  /** The operator's orchestrator config file and its TLS files; without one, the orchestrator's defaults. */
  config?: OrchestratorConfigFile;
}

export interface DeployOptions {
  image: string;
  port: number;
  /** Copy the image from this machine's Docker instead of pulling it there. */
  uploadImage: boolean;
  /** Epoch ms after which waiting (Docker, the orchestrator's /health) fails. */
  deadline: number;
  pollMs: number;
  say: (line: string) => void;
}

/**
 * Install the orchestrator on its instance over SSH and start it, or keep it when it already runs
 * what this run would start. The key, the inventory, the config file and its TLS files travel on
 * the SSH channel's stdin, into a root-only folder (0700, files 0600); user-data never carries
 * them. When only the config file or the TLS files changed (keys rotated, a certificate renewed,
 * see RELOADABLE_KEYS), they are rewritten and the running container gets SIGHUP: no request is
 * dropped. Resolves once the orchestrator answers /health on the instance (with TLS, serving the
 * certificate sent).
 */
export async function deployOrchestrator(
  target: SshTarget,
  cluster: string,
  payload: OrchestratorPayload,
  options: DeployOptions,
): Promise<{ action: 'started' | 'kept' | 'reloaded'; startedAt: string }> {
  const paths = remotePaths(cluster);
  const what = `the orchestrator's instance`;
  options.say(`waiting for Docker on ${what} to deploy the orchestrator`);
  await waitForDocker(target, what, { ...options, fail: deployError });

  const imageId = options.uploadImage ? await localImageId(options.image) : null;
  if (imageId !== null && (await remote(target, 'image id', `docker image inspect -f '{{.Id}}' ${shellWord(options.image)} 2>/dev/null || true`)).trim() !== imageId) {
    options.say(`orchestrator: ${await loadImage(target, options.image, what, deployError)}`);
  }

  const files = payload.config ? configFiles(paths, payload.config) : null;
  const digest = createHash('sha256')
    .update(
      JSON.stringify({
        image: options.image,
        imageId,
        port: options.port,
        workers: payload.inventory.workers,
        containers: payload.inventory.containers.map((c) => [c.id, c.host, c.port]),
        // What SIGHUP cannot change; absent without a config file, so that a deploy made before the key existed is kept.
        ...(files ? { config: files.restartSettings } : {}),
      }),
    )
    .update(payload.workerKey)
    .update(payload.knownHosts ?? '')
    .digest('hex');
  const inspect = `docker inspect -f '{{index .Config.Labels "${DEPLOY_LABEL}"}} {{.State.Running}} {{.State.StartedAt}}' ${paths.container}`;
  const [label, running, startedAt] = (await remote(target, 'inspect', `${inspect} 2>/dev/null || true`)).trim().split(' ');
  if (label === digest && running === 'true') {
    if (!files || (await remote(target, 'config digest', `cat ${paths.configDigestPath} 2>/dev/null || true`)).trim() === files.digest) {
      return { action: 'kept', startedAt: isoTime(startedAt!) };
    }
    options.say('orchestrator: only its config file or TLS files changed: rewriting them and sending it SIGHUP (its container keeps running)');
    await writeConfigFiles(target, paths, files);
    await remote(target, 'SIGHUP', `docker kill --signal HUP ${paths.container} >/dev/null`);
    // Recorded once it was told: a run that stops before this sends SIGHUP again.
    await writeRootFile(target, paths.configDigestPath, Buffer.from(`${files.digest}\n`));
    await waitForHealth(target, options, payload.config?.tls?.cert);
    return { action: 'reloaded', startedAt: isoTime(startedAt!) };
  }

  // Stopped before its files change: on its way out it writes its own state file.
  await remote(target, 'stop', `if docker container inspect ${paths.container} >/dev/null 2>&1; then docker stop -t ${STOP_TIMEOUT_S} ${paths.container} >/dev/null && docker rm ${paths.container} >/dev/null; fi`);
  await writeRootFile(target, `${paths.stateDir}/keys/workers.pem`, payload.workerKey);
  if (payload.knownHosts !== null) await writeRootFile(target, `${paths.stateDir}/keys/known_hosts`, Buffer.from(payload.knownHosts));
  await writeRootFile(target, `${paths.stateDir}/state.json`, Buffer.from(`${JSON.stringify(payload.inventory, null, 2)}\n`));
  if (files) await writeConfigFiles(target, paths, files);
  else await remote(target, 'remove the config', `rm -f ${onInstance(paths, paths.configPath)} ${onInstance(paths, paths.tlsCertPath)} ${onInstance(paths, paths.tlsKeyPath)} ${paths.configDigestPath}`);

  const image = shellWord(options.image);
  const run = [
    'docker run -d',
    `--name ${paths.container}`,
    `--label ${DEPLOY_LABEL}=${digest}`,
    '--restart unless-stopped',
    '--network host',
    // Root in the container: its key and inventory are root's alone on the instance.
    '--user 0:0',
    `--stop-timeout ${STOP_TIMEOUT_S}`,
    `-v ${paths.stateDir}:${CONTAINER_STATE_DIR}`,
    `-e ORCH_HOST=0.0.0.0 -e ORCH_PORT=${options.port} -e ORCH_STATE_PATH=${CONTAINER_STATE_DIR}/state.json`,
    image,
    // The image's entrypoint is the orchestrator: what follows the image are its flags. SIGHUP rereads this file.
    ...(files ? [`--config ${paths.configPath}`] : []),
  ].join(' ');
  await remote(target, 'docker run', `{ docker image inspect ${image} >/dev/null 2>&1 || docker pull -q ${image} >/dev/null; } && ${run} >/dev/null`);
  if (files) await writeRootFile(target, paths.configDigestPath, Buffer.from(`${files.digest}\n`));
  options.say(`orchestrator started on its instance; waiting for it to answer /health`);
  await waitForHealth(target, options, payload.config?.tls?.cert);
  return { action: 'started', startedAt: isoTime((await remote(target, 'inspect', inspect)).trim().split(' ')[2]!) };
}

/** The config file and TLS files as they go onto the instance, and the digests that tell a restart from a SIGHUP. */
interface ConfigFiles {
  /** Path on the instance -> content. */
  contents: Map<string, Buffer>;
  /** The settings only a restart applies, and whether it serves TLS (a switch is another server). */
  restartSettings: Record<string, unknown>;
  /** Of every file: what the running orchestrator was last given is compared with it. */
  digest: string;
}

function configFiles(paths: ReturnType<typeof remotePaths>, file: OrchestratorConfigFile): ConfigFiles {
  // The container sees the TLS files where this run puts them, not where they are on this machine.
  const settings = { ...file.settings, ...(file.tls ? { tlsCertFile: paths.tlsCertPath, tlsKeyFile: paths.tlsKeyPath } : {}) };
  const contents = new Map<string, Buffer>([[onInstance(paths, paths.configPath), Buffer.from(`${JSON.stringify(settings, null, 2)}\n`)]]);
  if (file.tls) {
    contents.set(onInstance(paths, paths.tlsCertPath), file.tls.cert);
    contents.set(onInstance(paths, paths.tlsKeyPath), file.tls.key);
  }
  const hash = createHash('sha256');
  for (const [path, content] of contents) hash.update(`${path}\0${content.length}\0`).update(content);
  return {
    contents,
    restartSettings: { ...Object.fromEntries(Object.entries(settings).filter(([key]) => !RELOADABLE_KEYS.has(key))), tls: file.tls !== null },
    digest: hash.digest('hex'),
  };
}

/** Certificate and key first: the config that names them is written last. */
async function writeConfigFiles(target: SshTarget, paths: ReturnType<typeof remotePaths>, files: ConfigFiles): Promise<void> {
  const config = onInstance(paths, paths.configPath);
  for (const [path, content] of files.contents) if (path !== config) await writeRootFile(target, path, content);
  await writeRootFile(target, config, files.contents.get(config)!);
  if (files.contents.size === 1) await remote(target, 'remove the TLS files', `rm -f ${onInstance(paths, paths.tlsCertPath)} ${onInstance(paths, paths.tlsKeyPath)}`);
}

/** Where a path in the container's /state is on the instance. */
function onInstance(paths: ReturnType<typeof remotePaths>, containerPath: string): string {
  return `${paths.stateDir}${containerPath.slice(CONTAINER_STATE_DIR.length)}`;
}

/**
 * GET /health of the orchestrator through an SSH tunnel until 200 (it is 503 until a container
 * answers); with `certificate` (PEM, leaf first), over TLS until it serves that one: a renewed
 * certificate is in use, not just on disk.
 */
async function waitForHealth(target: SshTarget, options: DeployOptions, certificate?: Buffer): Promise<void> {
  const expected = certificate ? new X509Certificate(certificate).raw : undefined;
  let last = '';
  await pollUntil(
    async () => {
      try {
        const { status, body, certificate: served } = await sshHttpGet(target, options.port, '/health', 5_000, { tls: expected !== undefined });
        if (expected && !served?.equals(expected)) last = 'it serves another certificate than the one sent';
        else if (status === 200) return true;
        else last = `HTTP ${status} ${body.slice(0, 200)}`;
      } catch (error) {
        last = (error as Error).message;
      }
      return undefined;
    },
    {
      timeoutMs: untilDeadline(options.deadline),
      intervalMs: options.pollMs,
      onTimeout: () => new OrchestratorDeployError(`the orchestrator on its instance (${target.host}) did not answer /health in time: ${last}`),
    },
  );
}

/** A root-only file (0600, in 0700 folders) with `content`, sent on stdin, replaced atomically. */
async function writeRootFile(target: SshTarget, path: string, content: Buffer): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf('/'));
  const script = `umask 077 && mkdir -p ${dir} && chmod 700 ${REMOTE_ROOT} ${dir} && cat > ${path}.new && chmod 600 ${path}.new && mv ${path}.new ${path}`;
  await remote(target, `write ${path}`, script, content);
}

/** Run the shell `script` as root there; its stdout, or an OrchestratorDeployError naming `step` with its last stderr line. */
async function remote(target: SshTarget, step: string, script: string, stdin?: Buffer): Promise<string> {
  const quoted = `'${script.replaceAll("'", `'\\''`)}'`;
  const result = await sshExec(target, asRoot(`sh -c ${quoted}`), stdin ? Readable.from([stdin]) : undefined);
  if (result.code !== 0) throw new OrchestratorDeployError(`on the orchestrator's instance (${target.host}), ${step} exited ${result.code}: ${lastLine(result.stderr)}`);
  return result.stdout;
}

const deployError: FailWith = (message) => new OrchestratorDeployError(message);

async function localImageId(image: string): Promise<string> {
  const inspect = spawn('docker', ['image', 'inspect', '-f', '{{.Id}}', image], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  inspect.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  inspect.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => inspect.once('close', resolve));
  if (code !== 0) throw new OrchestratorDeployError(`image ${image} is not in this machine's Docker (build it with npm run build:orchestrator-image): ${lastLine(err)}`);
  return out.trim();
}

/** Image references go into a shell command: the config allows any string, so refuse what is not a plain reference. */
function shellWord(value: string): string {
  if (!/^[\w.:/@-]+$/.test(value)) throw new OrchestratorDeployError(`orchestratorImage ${JSON.stringify(value)} is not a plain image reference`);
  return value;
}

/** Docker's times carry nanoseconds; the state file's are ISO with milliseconds. */
function isoTime(dockerTime: string): string {
  return new Date(dockerTime).toISOString();
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '';
}
