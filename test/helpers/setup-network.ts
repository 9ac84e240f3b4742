import { Agent, setGlobalDispatcher } from 'undici';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$/;

// nock replaces global fetch with an interceptor that breaks streamed and aborted bodies on Node 20;
// keep the real fetch and guard it (and every undici client on the global dispatcher) below instead.
const realFetch = globalThis.fetch;
const { default: nock } = await import('nock');
globalThis.fetch = realFetch;

// Tests may only talk to loopback; anything else fails loudly instead of leaving the machine.
nock.disableNetConnect();
nock.enableNetConnect((host: string) => LOOPBACK.test(host.replace(/:\d+$/, '')));

const guarded = new Agent({
  connect: (options, callback) => {
    if (!LOOPBACK.test(String(options.hostname))) {
      callback(new Error(`test network guard: refusing to connect to ${String(options.hostname)}`), null);
      return;
    }
    connector(options, callback);
  },
});
const { buildConnector } = await import('undici');
const connector = buildConnector({});
setGlobalDispatcher(guarded);
