import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from '../../common/src/logger.js';
import { pollWithin } from '../../common/src/poll-until.js';
import { createDriver } from '../../runtime/src/create-driver.js';
import { LABELS, type ContainerInfo, type RuntimeDriver } from '../../runtime/src/driver.js';
import type { StateFile, WorkerRecord } from '../../status/src/schema.js';
import { StateStore } from '../../status/src/state-store.js';
import { acquireStateLock, type StateLock } from '../../status/src/state-lock.js';
import { loadProvisionConfig } from '../../provisioning/src/config.js';
import { createWorkerProvider } from '../../provisioning/src/create-provider.js';
import type { WorkerProvider } from '../../provisioning/src/worker-provider.js';
import { accessLog } from './access-log.js';
import { AccessControl } from './access-control.js';
import { createRequestListener } from './app.js';
import { answerClientError, answerOnSocket, CONNECT_REFUSED } from './client-errors.js';
import { Autoscaler } from './autoscaler.js';
import { RuntimeOperations } from './runtime-operations.js';
import { RELOADABLE_KEYS, type OrchestratorConfig } from './config.js';
import { ContainerPool, type Container } from './container-pool.js';
import { exposureWarnings } from './exposure.js';
import { ConflictError, InventoryError, MachinesUnavailableError } from './errors.js';
import { MachineScaler } from './machine-scaler.js';
import { WorkerFleet } from './worker-fleet.js';
import { NotFoundError } from '../../common/src/http-errors.js';
import { reconcile } from './reconciler.js';
import { Healer } from './healer.js';
import { HealthChecker } from './health-checker.js';
import { WorkerMonitor } from './worker-monitor.js';
import { DashboardFeed } from './dashboard-feed.js';
import { ClusterView } from './cluster-view.js';
import { OrchestratorMetrics } from './metrics.js';
import { ProxyHandler } from './proxy-handler.js';
import { RejectionLog, type Rejection } from './rejection-log.js';
import { RequestQueue } from './request-queue.js';
import { RequestStats } from './request-stats.js';
import { StatusPublisher } from './status-publisher.js';
import { describeCertificate, loadServerCertificate, warnOnExpiry, type ServerCertificate } from './tls.js';
import { UpstreamClient, upstreamOptionsFrom } from './upstream/upstream-client.js';

/** The orchestrator composed once: pool, queue, forwarding, control loops and the HTTP edge. */
export class Orchestrator {
  readonly pool: ContainerPool;
  readonly queue: RequestQueue;
  readonly proxy: ProxyHandler;
  /** What the request path counts; observers read it through `view`. */
  readonly stats = new RequestStats();
  /** The cluster as metrics, status file, dashboard and /health see it. */
  readonly view: ClusterView;
  readonly health: HealthChecker;
  /** Every start, replace, relocate, drain and remove, bounded per worker and over the cluster. */
  readonly operations: RuntimeOperations;
  readonly healer: Healer;
  readonly workers: WorkerMonitor;
  readonly autoscaler: Autoscaler;
  /** Launches and releases workers; absent when the state file records no provisioning config to make them with. */
  readonly fleet: WorkerFleet | undefined;
  /** The machine autoscaler (maxWorkers > 0). */
  readonly machines: MachineScaler | undefined;
  readonly publisher: StatusPublisher;
  readonly metrics: OrchestratorMetrics;
  readonly dashboard: DashboardFeed;
  /** Client keys, their scopes and rates. */
  readonly access: AccessControl;
  readonly #config: OrchestratorConfig;
  readonly #log: Logger;
  readonly #upstream: UpstreamClient;
  readonly #rejections: RejectionLog;
  /** HTTPS when the config names a certificate (its secure context is replaced on reload), else HTTP. */
  readonly #server: Server | HttpsServer;
  /** Failed TLS handshakes: scanners and old clients, counted past a few lines a second. */
  readonly #handshakes: RejectionLog;
  readonly #lock: StateLock;
  readonly #startedAt = new Date().toISOString();
  #url = '';
  #closing: Promise<void> | undefined;

  private constructor(
    config: OrchestratorConfig,
    inventory: StateFile,
    store: StateStore,
    log: Logger,
    driverFor: (worker: WorkerRecord) => RuntimeDriver,
    list: (worker: WorkerRecord) => Promise<ContainerInfo[]>,
    lock: StateLock,
    provider: WorkerProvider | undefined,
    certificate: ServerCertificate | undefined,
  ) {
    this.#config = config;
    this.#lock = lock;
    this.access = new AccessControl(config);
    this.#log = log;
    this.pool = new ContainerPool({ log, ejection: { baseMs: config.ejectionBaseMs, maxMs: config.ejectionMaxMs } });
    this.pool.load(inventory.workers, inventory.containers, config.containerConcurrency);
    this.queue = new RequestQueue(this.pool, { maxQueue: config.maxQueue, queueTimeoutMs: config.queueTimeoutMs, clientQueueShare: config.clientQueueShare });
    this.#upstream = new UpstreamClient(upstreamOptionsFrom(config));
    this.view = new ClusterView({
      cluster: inventory.cluster,
      pool: this.pool,
      queue: this.queue,
      maxQueue: config.maxQueue,
      stats: this.stats,
      orchestrator: () => ({ pid: process.pid, url: this.#url, startedAt: this.#startedAt, running: this.#closing === undefined }),
      autoscaler: () => ({
        policy: this.autoscaler.options.policy,
        paused: this.autoscaler.paused,
        min: this.autoscaler.options.min,
        max: this.autoscaler.options.max,
        decisions: [...this.autoscaler.decisions],
      }),
      machines: () => this.fleet?.snapshot({ paused: this.autoscaler.paused, minWorkers: config.minWorkers, maxWorkers: config.maxWorkers }) ?? null,
      provisioning: inventory.provisioning,
      scaling: () => ({
        decisions: this.autoscaler.decisionCounts,
        desired: this.autoscaler.decisions.at(-1)?.desired ?? this.pool.size,
      }),
    });
    this.metrics = new OrchestratorMetrics(this.view);
    this.stats.recorder = this.metrics;
    this.proxy = new ProxyHandler({
      pool: this.pool,
      queue: this.queue,
      upstream: this.#upstream,
      stats: this.stats,
      log,
      options: {
        maxBodyBytes: config.maxBodyBytes,
        maxAttempts: config.maxAttempts,
        idempotentPaths: config.idempotentPaths,
        upstreamTimeoutMs: config.upstreamTimeoutMs,
        healthFall: config.healthFall,
      },
    });
    this.health = new HealthChecker(
      { pool: this.pool, upstream: this.#upstream, log },
      { intervalMs: config.healthIntervalMs, timeoutMs: config.healthTimeoutMs, fall: config.healthFall, rise: config.healthRise, concurrency: config.healthProbeConcurrency },
    );
    this.operations = new RuntimeOperations(
      {
        pool: this.pool,
        driverFor,
        list,
        probe: async (c) => (await this.health.check(c)).ok,
        forget: (id) => this.#upstream.forget(id),
        log,
      },
      {
        cluster: inventory.cluster,
        containerConcurrency: config.containerConcurrency,
        startTimeoutMs: config.startTimeoutMs,
        stopTimeoutMs: config.stopTimeoutMs,
        drainTimeoutMs: config.drainTimeoutMs,
        maxPerWorker: config.maxContainersPerWorker,
        maxOperations: config.maxRuntimeOperations,
      },
    );
    this.healer = new Healer(
      { pool: this.pool, operations: this.operations, log },
      {
        intervalMs: config.healthIntervalMs,
        backoffInitialMs: config.restartBackoffMs,
        backoffMaxMs: config.restartBackoffMaxMs,
        backoffResetMs: config.restartBackoffResetMs,
      },
    );
    this.workers = new WorkerMonitor(
      { pool: this.pool, operations: this.operations, log },
      { intervalMs: config.healthIntervalMs, timeoutMs: config.workerCheckTimeoutMs, fall: config.healthFall, rise: config.healthRise },
    );
    this.autoscaler = new Autoscaler(
      {
        pool: this.pool,
        operations: this.operations,
        forwarded: () => this.stats.counters.accepted,
        queued: () => this.queue.length,
        p90LatencyMs: (windowMs) => this.stats.latencies.percentile(90, windowMs),
        log,
      },
      {
        policy: config.autoscalePolicy,
        min: config.minContainers,
        max: config.maxContainers,
        minPerWorker: config.minContainersPerWorker,
        maxStep: config.maxScaleStep,
        windowMs: config.scaleWindowMs,
        requestsPerContainer: config.requestsPerContainer,
        intervalMs: config.scaleIntervalMs,
        rules: config.scaleRules,
        targetConcurrency: config.targetConcurrency,
        stabilizationMs: config.scaleDownStabilizationMs,
        scaleUpCooldownMs: config.scaleUpCooldownMs,
        scaleDownCooldownMs: config.scaleDownCooldownMs,
      },
    );
    this.fleet = provider
      ? new WorkerFleet(
          {
            pool: this.pool,
            provider,
            operations: this.operations,
            wanted: () => this.autoscaler.wanted(),
            probe: async (c) => (await this.health.check(c)).ok,
            list: (worker) => this.operations.list(worker, config.workerCheckTimeoutMs),
            forget: (id) => this.#upstream.forget(id),
            log,
          },
          {
            containerConcurrency: config.containerConcurrency,
            drainTimeoutMs: config.drainTimeoutMs,
            backoffMs: config.workerLaunchBackoffMs,
            backoffMaxMs: config.workerLaunchBackoffMaxMs,
          },
        )
      : undefined;
    this.machines =
      this.fleet && config.maxWorkers > 0
        ? new MachineScaler(
            { pool: this.pool, fleet: this.fleet, autoscaler: this.autoscaler, operations: this.operations, log },
            {
              minWorkers: config.minWorkers,
              maxWorkers: config.maxWorkers,
              maxPerWorker: config.maxContainersPerWorker,
              surplusMs: config.workerSurplusMs,
              upCooldownMs: config.workerScaleUpCooldownMs,
              downCooldownMs: config.workerScaleDownCooldownMs,
              intervalMs: config.scaleIntervalMs,
            },
          )
        : undefined;
    this.publisher = new StatusPublisher({ store, view: this.view, log }, { intervalMs: config.statusWriteIntervalMs });
    this.dashboard = new DashboardFeed(
      { sources: this.view, log },
      { intervalMs: 1_000, maxViewers: config.maxDashboardViewers },
    );
    this.#rejections = new RejectionLog(log);
    const listener = createRequestListener({
      proxy: this.proxy,
      status: () => this.view.status(),
      metrics: () => this.metrics.render(),
      dashboard: this.dashboard,
      healthy: () => this.view.healthy(),
      access: this.access,
      clientCounts: this.metrics,
      admin: {
        token: config.adminToken,
        scaleTo: (n) => this.autoscaler.scaleTo(n, 'admin request', { ignoreCooldown: true }),
        drain: (id) => this.pool.drain(this.#adminTarget(id, { removing: false }), 'admin request'),
        remove: (id) => this.operations.drainAndRemove(this.#adminTarget(id, { removing: true }), 'admin request'),
        addWorker: (id, reason) => this.#machineFleet().launch(id ?? this.#machineFleet().nextId(), reason, { launchedBy: 'provisioning' }),
        removeWorker: (id, reason) => {
          this.#machineFleet().known(id);
          return this.#machineFleet().release(id, reason);
        },
        setPaused: (paused) => {
          this.autoscaler.paused = paused;
          this.pool.touch();
          log.info({ paused }, paused ? 'autoscaler paused' : 'autoscaler resumed');
        },
      },
      log,
      rejections: this.#rejections,
      retryAfterSeconds: 1,
      onFinished: config.accessLog ? accessLog(log) : undefined,
      closing: () => this.#closing !== undefined,
    });
    const httpOptions = {
      maxHeaderSize: config.maxHeaderBytes,
      headersTimeout: config.clientHeadersTimeoutMs,
      requestTimeout: config.clientRequestTimeoutMs,
      // How often slow clients are looked for: often enough that the timeouts above hold to about a tenth.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(config.clientHeadersTimeoutMs / 10))),
      // The listener checks Host itself, so a request without one gets the JSON error like every other.
      requireHostHeader: false,
    };
    this.#handshakes = new RejectionLog(log, { message: 'TLS handshake failed', summaryMessage: 'more TLS handshakes failed than logged one by one' });
    if (certificate) {
      // A client stuck before its first HTTP byte is held to the same bound as one slow with its headers.
      const server = createHttpsServer({ ...httpOptions, ...certificate.context, handshakeTimeout: config.clientHeadersTimeoutMs }, listener);
      server.on('tlsClientError', (error: NodeJS.ErrnoException, socket) => {
        // No HTTP answer is given; 400 stands for a client's fault, which the log records at info.
        const entry: Rejection & { remote: string | undefined } = { requestId: '-', path: '-', status: 400, error: error.code ?? 'TLS_HANDSHAKE_FAILED', remote: socket.remoteAddress };
        this.#handshakes.record(entry);
      });
      this.#server = server;
    } else {
      this.#server = createServer(httpOptions, listener);
    }
    this.#server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
      const answered = answerClientError(error, socket);
      if (answered) this.#rejections.record({ requestId: '-', path: '-', ...answered });
    });
    // Not a forward proxy: CONNECT gets an answer instead of a silently closed connection.
    this.#server.on('connect', (_req, socket: Duplex) => {
      this.#rejections.record({ requestId: '-', path: '-', ...answerOnSocket(socket, CONNECT_REFUSED) });
    });
    // Longer than the usual 60 s idle timeout of load balancers in front, so they close first.
    this.#server.keepAliveTimeout = 65_000;
  }

  #machineFleet(): WorkerFleet {
    if (!this.fleet) throw new MachinesUnavailableError();
    return this.fleet;
  }

  /** A container the admin API may act on: known and not already being replaced or removed; managed, to be removed. */
  #adminTarget(id: string, options: { removing: boolean }): Container {
    const c = this.pool.get(id);
    if (!c) throw new NotFoundError(`no container ${id}`);
    if (options.removing && !c.managed) throw new ConflictError(`container ${id} is not managed by the orchestrator (managed: false); whoever runs it owns it`);
    if (c.operation) throw new ConflictError(`container ${id} is already being replaced or removed`);
    return c;
  }

  /**
   * Load the inventory from the status store (refusing a missing, empty or foreign state file)
   * and reconcile it with what the workers' runtimes really run.
   */
  static async create(
    config: OrchestratorConfig,
    log: Logger,
    deps: { driverFor?: (worker: WorkerRecord) => RuntimeDriver; workerProvider?: WorkerProvider } = {},
  ): Promise<Orchestrator> {
    // Bad certificate files are refused before anything else is touched.
    const certificate = loadServerCertificate(config);
    if (certificate) warnOnExpiry(log, certificate);
    // One orchestrator per state file: a second one would route, heal and launch for the same needs.
    const lock = await acquireStateLock(config.statePath);
    try {
      return await Orchestrator.#create(config, log, deps, lock, certificate);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  static async #create(
    config: OrchestratorConfig,
    log: Logger,
    deps: { driverFor?: (worker: WorkerRecord) => RuntimeDriver; workerProvider?: WorkerProvider },
    lock: StateLock,
    certificate: ServerCertificate | undefined,
  ): Promise<Orchestrator> {
    const store = new StateStore(config.statePath);
    const recorded = await store.read();
    const provider = deps.workerProvider ?? (recorded?.provisioning ? recordedProvider(recorded.provisioning, config.statePath, log) : undefined);
    if (config.maxWorkers > 0 && !provider) {
      throw new InventoryError(`maxWorkers needs workers made by \`npm run provision\`: ${config.statePath} records no provisioning config to launch more with`);
    }
    // With an autoscaler, workers without containers are enough: it starts the minimum; with a machine autoscaler, no worker is.
    const canFill = config.autoscalePolicy !== 'none' && config.minContainers > 0;
    const canLaunch = config.maxWorkers > 0 && config.minWorkers > 0;
    if (!recorded || (recorded.workers.length === 0 && !canLaunch) || (recorded.containers.length === 0 && !canFill && !canLaunch)) {
      throw new InventoryError(`no containers in ${config.statePath}: run \`npm run provision\` first`);
    }
    const drivers = new Map<string, RuntimeDriver>();
    const driverFor =
      deps.driverFor ??
      ((worker: WorkerRecord): RuntimeDriver => {
        let driver = drivers.get(worker.id);
        if (!driver) {
          driver = createDriver(worker.runtime, { statePath: config.statePath, cluster: recorded.cluster });
          drivers.set(worker.id, driver);
        }
        return driver;
      });
    const list = (worker: WorkerRecord) => driverFor(worker).list({ [LABELS.cluster]: recorded.cluster, [LABELS.worker]: worker.id });
    const { containers } = await reconcile(recorded, list, log);
    return new Orchestrator(config, { ...recorded, containers }, store, log, driverFor, list, lock, provider, certificate);
  }

  /** Probe every container once, start the loops, then listen. Resolves with the base URL. */
  async listen(): Promise<string> {
    await this.health.tick();
    this.health.start();
    if (this.#config.replaceUnhealthy) {
      this.healer.start();
      this.workers.start();
    }
    if (this.autoscaler.options.policy !== 'none') await this.autoscaler.enforceBounds();
    // Without a policy too: its passes carry an admin scale request through to the end.
    this.autoscaler.start();
    if (this.machines) {
      // Before the first pass, so that it counts them; their launches go on in the background.
      await this.machines.adoptOrRelease().catch((error: unknown) => this.#log.error({ err: error }, 'could not look for machines the inventory does not list'));
      this.machines.start(0);
    }
    this.publisher.start();
    this.dashboard.start();
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#config.port, this.#config.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.#server.address() as AddressInfo;
    const host = this.#config.host.includes(':') ? `[${this.#config.host}]` : this.#config.host;
    this.#url = `${this.#server instanceof HttpsServer ? 'https' : 'http'}://${host}:${port}`;
    await this.publisher.flush();
    this.#warnIfExposed();
    this.#log.info({ url: this.#url, containers: this.pool.size, capacity: this.pool.capacity() }, 'orchestrator listening');
    return this.#url;
  }

  get url(): string {
    return this.#url;
  }

  /**
   * Take what can change while running from `config` (SIGHUP): the certificate and key, read
   * again (new handshakes get them; open connections keep theirs), and the client keys and rates.
   * Bad certificate files throw TlsInvalidError before anything changes. Other keys that differ
   * from the running config are named in a warning and keep their running values.
   */
  reload(config: OrchestratorConfig): void {
    const restart = [...new Set([...Object.keys(this.#config), ...Object.keys(config)])].filter(
      (key) => !RELOADABLE_KEYS.has(key) && !isDeepStrictEqual(this.#config[key as keyof OrchestratorConfig], config[key as keyof OrchestratorConfig]),
    );
    // HTTP to HTTPS or back is another server: that takes a restart.
    const tlsSwitched = (this.#server instanceof HttpsServer) !== (config.tlsCertFile !== undefined);
    if (tlsSwitched) restart.push('tlsCertFile', 'tlsKeyFile');
    const certificate = tlsSwitched ? undefined : loadServerCertificate(config);
    // Before the keys: whatever throws here leaves everything as it was.
    if (certificate && this.#server instanceof HttpsServer) this.#server.setSecureContext(certificate.context);
    const clientKeys = this.access.reload(config);
    this.#log.info({ clientKeys, certificate: certificate && describeCertificate(certificate) }, 'config reloaded');
    if (certificate) warnOnExpiry(this.#log, certificate);
    if (restart.length > 0) this.#log.warn({ keys: restart }, 'config keys changed that take effect only after a restart: their running values are kept');
    // A reload that removed the last key of a scope opened it again.
    this.#warnIfExposed();
  }

  /** Loud, at start and after each reload: on a public address, everything the config leaves open is open to anyone who finds it. */
  #warnIfExposed(): void {
    const exposure = exposureWarnings(this.#config, this.access);
    if (!exposure.loopback && exposure.open.length > 0) this.#log.warn({ url: this.#url, open: exposure.open }, `EXPOSED: ${this.#url} is reachable from other machines and ${exposure.open.join('; ')}`);
  }

  /**
   * Graceful stop: refuse new requests, let accepted ones (running and queued) finish within
   * `shutdownTimeoutMs`, then stop the loops, write the status a last time and close. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.queue.close();
      const serverClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      await pollWithin(async () => (this.stats.active === 0 ? true : undefined), { timeoutMs: this.#config.shutdownTimeoutMs, intervalMs: 20 });
      if (this.stats.active > 0) this.#log.warn({ unfinished: this.stats.active }, 'shutdown deadline reached with requests unfinished');
      // Live dashboards get their stream ended; every connection closes before the last status write, so its counters count every answer given.
      await this.dashboard.stop();
      this.#server.closeAllConnections();
      await serverClosed;
      await this.machines?.stop();
      // A launch under way stops what it started (the next start finds anything left by its tags); releases finish.
      await this.fleet?.close();
      await this.autoscaler.stop();
      await this.healer.stop();
      await this.workers.stop();
      // What the loops asked for ends (each bounded by its start, drain or stop timeout) while probes and connections still work.
      await this.operations.onIdle();
      await this.health.stop();
      await this.publisher.stop();
      await this.#upstream.close();
      this.#rejections.flush();
      this.#handshakes.flush();
      await this.#lock.release();
      this.#log.info('orchestrator stopped');
    })();
    return this.#closing;
  }
}

/** The worker provider of the provisioning config the state file records, writing to this orchestrator's state path. */
function recordedProvider(recorded: Record<string, unknown>, statePath: string, log: Logger): WorkerProvider {
  let provisioning;
  try {
    provisioning = loadProvisionConfig({ env: {}, flags: { ...recorded, statePath } });
  } catch (error) {
    throw new InventoryError(`the provisioning config recorded in ${statePath} is not valid (${(error as Error).message}); run \`npm run provision\` again`);
  }
  return createWorkerProvider(provisioning, log, { env: process.env });
}
