import { request } from 'undici';
import { AppError } from '../../common/src/errors.js';
import { fetchLiveStatus } from '../../status/src/live-status.js';
import type { StateFile, WorkerRecord } from '../../status/src/schema.js';
import { readStateLock } from '../../status/src/state-lock.js';
import type { ProvisionConfig } from './config.js';
import { workerIds } from './inventory.js';

/** The orchestrator that owns a state file's inventory while it runs: changes go to it, never into the file. */
export interface InventoryOwner {
  pid: number;
  /** Its base URL, where the admin API answers. */
  url: string;
}

/** What was handed to the running orchestrator. */
export interface Handover {
  orchestrator: InventoryOwner;
  /** Workers it launched for this run. */
  added: string[];
  /** Workers it drained and released for this run. */
  removed: string[];
  /** Workers its machine autoscaler launched: its to release, left alone. */
  autoscalers: string[];
}

/** The orchestrator owns the inventory and this run cannot hand it the change (no token, or its admin API off). */
export class OrchestratorOwnsInventoryError extends AppError {
  constructor(owner: InventoryOwner, why: string, how: string) {
    super('ORCHESTRATOR_RUNNING', `the orchestrator (pid ${owner.pid}, ${owner.url}) owns the inventory while it runs and ${why}; ${how}`);
  }
}

/** The orchestrator answered 401: ORCH_ADMIN_TOKEN is not its admin token. */
export class AdminTokenRejectedError extends AppError {
  constructor(owner: InventoryOwner) {
    super('ADMIN_TOKEN_REJECTED', `the orchestrator (pid ${owner.pid}, ${owner.url}) refused ORCH_ADMIN_TOKEN: it is not its admin token`);
  }
}

/** This run would make workers otherwise than the running orchestrator does. */
export class ProvisioningChangedError extends AppError {
  constructor(owner: InventoryOwner, differences: string[]) {
    super(
      'PROVISIONING_CHANGED',
      `the orchestrator (pid ${owner.pid}) launches workers as they were provisioned, and this run differs: ${differences.join('; ')}; ` +
        'provision with the recorded settings, or stop the orchestrator to change how workers are made',
    );
  }
}

/** The orchestrator refused or failed a change; `remoteCode` is its error code. */
export class HandoverFailedError extends AppError {
  readonly remoteCode: string | undefined;

  constructor(what: string, status: number, remoteCode: string | undefined, message: string) {
    super('HANDOVER_FAILED', `the orchestrator refused ${what} (HTTP ${status}${remoteCode ? ` ${remoteCode}` : ''}): ${message}`);
    this.remoteCode = remoteCode;
  }
}

/**
 * The orchestrator that owns the inventory at `statePath`, or null: the state file says one runs
 * here (one on an EC2 instance of its own writes its own state; out of reach) and the state
 * file's lock names a live process on this host.
 */
export async function inventoryOwner(statePath: string, state: StateFile | null): Promise<InventoryOwner | null> {
  const record = state?.orchestrator;
  if (!record?.running || record.instanceId) return null;
  const holder = await readStateLock(statePath);
  return holder ? { pid: holder.pid, url: record.url } : null;
}

/** Settings that do not change how a worker is made (how many, how long to wait, where the state is, how to log; the orchestrator instance's). */
const NOT_WORKER_SETTINGS = new Set([
  'cluster',
  'workers',
  'statePath',
  'healthTimeoutMs',
  'launchTimeoutMs',
  'logLevel',
  'allowWorldOpen',
  'withOrchestrator',
  'clientCidr',
  'orchestratorImage',
  'orchestratorPort',
  'orchestratorInstanceType',
  'orchestratorConfig',
]);

/** Where `config` would make a worker otherwise than `recorded` (the config the running cluster was provisioned with), one line per setting. */
export function workerSettingDifferences(config: ProvisionConfig, recorded: Record<string, unknown>): string[] {
  // Every other key counts: a setting added later is compared unless listed above.
  const keys = new Set([...Object.keys(config), ...Object.keys(recorded)].filter((key) => !NOT_WORKER_SETTINGS.has(key)));
  const show = (value: unknown): string => (value === undefined ? 'unset' : JSON.stringify(value));
  return [...keys]
    .sort()
    .filter((key) => show((config as Record<string, unknown>)[key]) !== show(recorded[key]))
    .map((key) => `${key} is ${show((config as Record<string, unknown>)[key])}, recorded ${show(recorded[key])}`);
}

/** A client of the owner's admin API with ORCH_ADMIN_TOKEN. */
export class OrchestratorAdmin {
  readonly owner: InventoryOwner;
  readonly #token: string;

  private constructor(owner: InventoryOwner, token: string) {
    this.owner = owner;
    this.#token = token;
  }

  /**
   * A client whose token the orchestrator takes: refused without a token
   * (OrchestratorOwnsInventoryError), with its admin API off (the same), or a wrong token
   * (AdminTokenRejectedError). Nothing changes before.
   */
  static async connect(owner: InventoryOwner, token: string | undefined): Promise<OrchestratorAdmin> {
    if (!token) throw new OrchestratorOwnsInventoryError(owner, 'ORCH_ADMIN_TOKEN is not set', 'set it to its admin token to hand it this change, or stop it first');
    const admin = new OrchestratorAdmin(owner, token);
    // Every /admin path passes the token check first: a path with no route answers 404 once the token is right.
    await admin.#call('GET', '/admin', undefined, [404]);
    return admin;
  }

  /** Its inventory now. */
  async status(): Promise<StateFile> {
    try {
      // The admin token reads /status too, when read keys guard it.
      return await fetchLiveStatus(`${this.owner.url}/status`, 10_000, this.#token);
    } catch (error) {
      throw new AppError('ORCHESTRATOR_UNREACHABLE', `the orchestrator (pid ${this.owner.pid}) at ${this.owner.url}/status: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Launch worker `id`; resolves once its containers are in rotation. */
  async addWorker(id: string): Promise<WorkerRecord> {
    return ((await this.#call('POST', '/admin/workers', { id })) as { worker: WorkerRecord }).worker;
  }

  /** Drain worker `id`, then release it; resolves with its containers once released. */
  async removeWorker(id: string): Promise<{ worker: string; containers: string[] }> {
    return (await this.#call('DELETE', `/admin/workers/${id}`)) as { worker: string; containers: string[] };
  }

  /** Pause its autoscalers, so nothing is launched again while the cluster is taken down. */
  async pauseAutoscaler(): Promise<void> {
    await this.#call('POST', '/admin/autoscaler/pause');
  }

  async #call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, expected: number[] = [200, 201, 202]): Promise<unknown> {
    const response = await request(`${this.owner.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      // A launch or a drain takes as long as it takes (minutes on EC2); the orchestrator bounds both itself.
      headersTimeout: 0,
      bodyTimeout: 0,
    }).catch((error: unknown) => {
      throw new AppError('ORCHESTRATOR_UNREACHABLE', `the orchestrator (pid ${this.owner.pid}) at ${this.owner.url}: ${(error as { code?: string }).code ?? (error as Error).message}`, { cause: error });
    });
    const text = await response.body.text();
    let answer: { error?: string; message?: string } | undefined;
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      answer = undefined;
    }
    if (expected.includes(response.statusCode)) return answer;
    if (response.statusCode === 401) throw new AdminTokenRejectedError(this.owner);
    if (response.statusCode === 403 && answer?.error === 'ADMIN_DISABLED') {
      throw new OrchestratorOwnsInventoryError(this.owner, 'its admin API is off', 'restart it with ORCH_ADMIN_TOKEN set to hand it changes, or stop it first');
    }
    throw new HandoverFailedError(`${method} ${path}`, response.statusCode, answer?.error, answer?.message ?? text.slice(0, 200));
  }
}

/**
 * Provision through the owner: refuse a run that would make workers otherwise than recorded; then
 * have it launch each of w1..w<workers> it lacks and release each worker provisioning launched
 * beyond them. Workers of its machine autoscaler are left to it. Returns what changed and its inventory then.
 */
export async function provisionThrough(admin: OrchestratorAdmin, config: ProvisionConfig, say: (line: string) => void): Promise<{ handover: Handover; status: StateFile }> {
  const before = await admin.status();
  const differences = before.provisioning ? workerSettingDifferences(config, before.provisioning) : [];
  if (differences.length > 0) throw new ProvisioningChangedError(admin.owner, differences);
  const wanted = new Set(workerIds(config));
  const present = new Set(before.workers.map((w) => w.id));
  const handover: Handover = {
    orchestrator: admin.owner,
    added: [...wanted].filter((id) => !present.has(id)),
    removed: before.workers.filter((w) => w.launchedBy === 'provisioning' && !wanted.has(w.id)).map((w) => w.id),
    autoscalers: before.workers.filter((w) => w.launchedBy === 'autoscaler').map((w) => w.id),
  };
  // Capacity first: the new workers take traffic before others leave.
  for (const id of handover.added) {
    say(`the orchestrator launches ${id}...`);
    await admin.addWorker(id);
    say(`${id} is in rotation`);
  }
  for (const id of handover.removed) {
    say(`the orchestrator drains and releases ${id}...`);
    await admin.removeWorker(id);
    say(`${id} released`);
  }
  return { handover, status: await admin.status() };
}

/** Remove workers through the owner, each drained then released; the containers they had. */
export async function removeThrough(admin: OrchestratorAdmin, ids: readonly string[], say: (line: string) => void): Promise<string[]> {
  const containers: string[] = [];
  for (const id of ids) {
    say(`the orchestrator drains and releases ${id}...`);
    containers.push(...(await admin.removeWorker(id)).containers);
    say(`${id} released`);
  }
  return containers;
}
