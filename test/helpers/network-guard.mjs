// @ts-check
import net from 'node:net';

/**
 * Tests may only talk to 127.0.0.0/8. Every TCP connection of Node (net, http, undici and fetch,
 * ssh2, the AWS SDK) goes through `net.Socket#connect`; this guard refuses any other destination
 * before a packet leaves. Loaded by vitest's setup for the test process, and with `--import` by
 * every CLI a test starts (test/helpers/cli.ts), where a refusal ends the process with exit code 97
 * and one line on stderr, so the test that started it fails.
 *
 * The EC2 emulator invents public addresses for its instances (54.214.x.y). Where a test stands in
 * for an instance (its model containers, its sshd), it serves on 127.214.x.y (see
 * `emulatorAddressOnLoopback`), and opts in to routing with `routeEmulatorAddresses()` or, for a
 * CLI, `TEST_ROUTE_EMULATOR_ADDRESSES=1`. This lives only
 * here: product code has no setting that sends an instance's traffic anywhere else. Plain
 * JavaScript, so that worker threads, which inherit `--import` but not tsx's loader, load it too.
 */

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1|\[::1\]|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;
// moto's public addresses; its private ones (10.x.y.z) are never routed.
const EMULATOR_BLOCK = /^54\.214\.(\d{1,3})\.(\d{1,3})$/;
export const ROUTE_ENV = 'TEST_ROUTE_EMULATOR_ADDRESSES';
/** Exit code of a CLI whose guard refused a connection. */
export const GUARD_EXIT_CODE = 97;

/** @typedef {{ mode: 'exit' | 'record', route: boolean, refused: string[] }} GuardState */

const KEY = Symbol.for('inference-orchestrator.test-network-guard');
/** @type {Record<symbol, GuardState | undefined>} */
const globals = /** @type {any} */ (globalThis);

/**
 * Where a test serves what stands in for an emulator instance at `address`; undefined for other addresses.
 * @param {string} address
 * @returns {string | undefined}
 */
export function emulatorAddressOnLoopback(address) {
  return EMULATOR_BLOCK.test(address) ? address.replace(EMULATOR_BLOCK, '127.214.$1.$2') : undefined;
}

/**
 * Route the emulator's instance addresses to their loopback stand-ins; returns the undo.
 * @returns {() => void}
 */
export function routeEmulatorAddresses() {
  const state = install();
  state.route = true;
  return () => {
    state.route = false;
  };
}

/** In the test process: refusals are recorded (and fail the test, see setup-network.ts) instead of ending it. */
export function recordRefusals() {
  install().mode = 'record';
}

/**
 * The destinations refused since the last call.
 * @returns {string[]}
 */
export function takeRefusals() {
  const state = install();
  return state.refused.splice(0);
}

/**
 * The options object `connect` will use (to read and rewrite its host), or null for a unix socket.
 * @param {any[]} args
 * @returns {{ options: { host?: string, port: number, path?: string }, args: any[] } | null}
 */
function tcpOptions(args) {
  const [first, ...rest] = args;
  // net.connect() hands over its normalised [options, callback] array.
  const options = Array.isArray(first) ? first[0] : first !== null && typeof first === 'object' ? first : null;
  if (options) return options.path ? null : { options, args };
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    const tcp = { port: Number(first), host: typeof rest[0] === 'string' ? rest.shift() : 'localhost' };
    return { options: tcp, args: [tcp, ...rest] };
  }
  return null;
}

/** @returns {GuardState} */
function install() {
  const installed = globals[KEY];
  if (installed) return installed;
  /** @type {GuardState} */
  const state = { mode: 'exit', route: process.env[ROUTE_ENV] === '1', refused: [] };
  globals[KEY] = state;
  const connect = net.Socket.prototype.connect;
  /** @this {net.Socket} @param {any[]} original */
  function guardedConnect(...original) {
    const tcp = tcpOptions(original);
    if (!tcp) return connect.apply(this, /** @type {any} */ (original));
    const host = String(tcp.options.host ?? 'localhost');
    const routed = state.route ? emulatorAddressOnLoopback(host) : undefined;
    if (routed) tcp.options.host = routed;
    else if (!LOOPBACK.test(host)) {
      const line = `test network guard: refusing to connect to ${host}:${tcp.options.port} (tests reach 127.0.0.0/8 only)`;
      if (state.mode === 'exit') {
        process.stderr.write(`${line}\n`);
        process.exit(GUARD_EXIT_CODE);
      }
      state.refused.push(`${host}:${tcp.options.port}`);
      process.nextTick(() => this.destroy(new Error(line)));
      return this;
    }
    return connect.apply(this, /** @type {any} */ (tcp.args));
  }
  net.Socket.prototype.connect = /** @type {any} */ (guardedConnect);
  return state;
}

install();
