import { readFileSync } from 'node:fs';
import type { ContainerResources } from '../../../runtime/src/driver.js';
import { GPU_COMPOSE_FILE, WORKER_COMPOSE_FILE, resourceVariables } from '../compose.js';

/** EC2 refuses user-data over 16 KB (before base64). */
export const USER_DATA_LIMIT_BYTES = 16 * 1024;

export interface UserDataOptions {
  cluster: string;
  workerId: string;
  /** The worker image: pulled from its registry, or (upload) waited for until provisioning loads it over SSH. */
  image: string;
  imageSource: 'registry' | 'upload';
  ports: [number, number];
  /** Model options for the containers (WORK_MS, ENABLE_CRASH_API...). */
  env: Record<string, string>;
  /** Limits and GPUs of each container (the worker template's); GPUs add worker/docker-compose.gpu.yml. */
  resources?: ContainerResources;
  /** Where the compose file and its .env go. @default '/opt/inference-worker' */
  installDir?: string;
  /** The SSH user the orchestrator's Docker driver logs in as: it joins the docker group. */
  sshUser?: string;
}

// Values are written into a shell script and a compose .env: keep them to a safe alphabet.
const SAFE_VALUE = /^[\w.:/@+-]*$/;

/** Boot script lines that install Docker and compose when missing (apt or dnf); they need a `log` function. */
const INSTALL_DOCKER = `if command -v docker >/dev/null 2>&1; then
  log "Docker already installed"
else
  log "installing Docker"
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io
    apt-get install -y -qq docker-compose-v2 || apt-get install -y -qq docker-compose
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q docker
    mkdir -p /usr/local/lib/docker/cli-plugins
  else
    log "no apt-get or dnf: install Docker on this image first"
    exit 1
  fi
  systemctl enable --now docker
fi`;

function checkSafe(values: Record<string, string>): void {
  for (const [key, value] of Object.entries(values)) {
    if (!SAFE_VALUE.test(value)) throw new Error(`user-data: ${key} contains characters a boot script cannot carry safely: ${JSON.stringify(value)}`);
  }
}

/**
 * The boot script of one worker instance: installs Docker and compose when missing (apt or dnf),
 * writes the repository's docker-compose.worker.yml and its environment, gets the image and
 * compose-starts the two model containers. Idempotent: a re-run only recreates what changed.
 */
export function workerUserData(options: UserDataOptions): string {
  const installDir = options.installDir ?? '/opt/inference-worker';
  const variables: Record<string, string> = {
    WORKER_IMAGE: options.image,
    CLUSTER: options.cluster,
    WORKER_ID: options.workerId,
    MODEL_HOST: '0.0.0.0',
    MODEL_PORT_A: String(options.ports[0]),
    MODEL_PORT_B: String(options.ports[1]),
    ...options.env,
    ...resourceVariables(options.resources),
  };
  checkSafe({ ...variables, INSTALL_DIR: installDir, SSH_USER: options.sshUser ?? '' });
  const compose = readFileSync(WORKER_COMPOSE_FILE, 'utf8');
  if (compose.includes('\nCOMPOSE_FILE_END\n')) throw new Error('user-data: the compose file contains the heredoc marker');
  const gpuCompose = options.resources?.gpus !== undefined ? readFileSync(GPU_COMPOSE_FILE, 'utf8') : null;
  if (gpuCompose?.includes('\nCOMPOSE_FILE_END\n')) throw new Error('user-data: the GPU compose file contains the heredoc marker');
  const env = Object.entries(variables).map(([key, value]) => `${key}=${value}`).join('\n');
  return `#!/bin/bash
# inference-orchestrator worker ${options.workerId} of cluster ${options.cluster}: Docker, then two model containers.
set -euo pipefail
INSTALL_DIR=${installDir}
PROJECT=${options.cluster}-${options.workerId}
log() { echo "[inference-worker] $*"; }

${INSTALL_DOCKER}
${
  options.sshUser
    ? `# The orchestrator drives this engine over SSH as ${options.sshUser}.
if id -u ${options.sshUser} >/dev/null 2>&1; then usermod -aG docker ${options.sshUser}; fi
`
    : ''
}compose() { if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi; }

mkdir -p "$INSTALL_DIR"
cat > "$INSTALL_DIR/docker-compose.worker.yml" <<'COMPOSE_FILE_END'
${compose.trimEnd()}
COMPOSE_FILE_END
${
  gpuCompose
    ? `cat > "$INSTALL_DIR/docker-compose.gpu.yml" <<'COMPOSE_FILE_END'
${gpuCompose.trimEnd()}
COMPOSE_FILE_END
`
    : ''
}cat > "$INSTALL_DIR/worker.env" <<'ENV_FILE_END'
${env}
ENV_FILE_END

IMAGE=${options.image}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
${
  options.imageSource === 'upload'
    ? `  log "waiting up to 30 min for provisioning to upload $IMAGE over SSH"
  for _ in $(seq 1 360); do docker image inspect "$IMAGE" >/dev/null 2>&1 && break; sleep 5; done`
    : `  log "pulling $IMAGE"
  docker pull "$IMAGE"`
}
fi

compose --project-name "$PROJECT" --env-file "$INSTALL_DIR/worker.env" -f "$INSTALL_DIR/docker-compose.worker.yml"${gpuCompose ? ' -f "$INSTALL_DIR/docker-compose.gpu.yml"' : ''} up -d --remove-orphans
log "started $PROJECT"
`;
}

export interface OrchestratorUserDataOptions {
  cluster: string;
  /** The orchestrator image: pulled now from its registry, or (upload) loaded later by provisioning over SSH. */
  image: string;
  imageSource: 'registry' | 'upload';
}

/**
 * The boot script of the orchestrator's instance: Docker, and the image when it comes from a
 * registry. Nothing secret: user-data is readable through the instance metadata service and
 * DescribeInstanceAttribute, so the worker key and the inventory come later, over SSH, and
 * provisioning starts the container then.
 */
export function orchestratorUserData(options: OrchestratorUserDataOptions): string {
  checkSafe({ CLUSTER: options.cluster, IMAGE: options.image });
  return `#!/bin/bash
# inference-orchestrator: the orchestrator's instance of cluster ${options.cluster}: Docker, then its image.
set -euo pipefail
log() { echo "[inference-orchestrator] $*"; }

${INSTALL_DOCKER}
${
  options.imageSource === 'registry'
    ? `
IMAGE=${options.image}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "pulling $IMAGE"
  docker pull "$IMAGE"
fi
`
    : ''
}log "ready: provisioning delivers the inventory and the worker key over SSH, then starts the orchestrator"
`;
}
