import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EC2Client } from '@aws-sdk/client-ec2';
import { cleanEnv } from './orchestrator-process.js';

/** One EC2 call as the fake saw it: the action and its query parameters. */
export interface Ec2Call {
  action: string;
  params: Record<string, string>;
}

interface FakeInstance {
  id: string;
  state: 'running' | 'terminated';
  publicIp: string;
  privateIp: string;
  tags: Record<string, string>;
  userData: string;
}

/**
 * An in-memory EC2 on 127.0.0.1 speaking the Query API (form-encoded POST, XML answers): key
 * pairs, security groups, images, instances and console output, enough for provisioning and
 * teardown. Clients reach it as a custom endpoint (`awsEndpoint`), in this process or a CLI's;
 * the test network guard keeps anything else from leaving the machine. Instances run at once
 * and get public addresses 127.0.0.<n>, so tests can serve their /health.
 */
export class FakeEc2 {
  readonly calls: Ec2Call[] = [];
  readonly instances: FakeInstance[] = [];
  readonly keyPairs = new Map<string, { id: string; tags: Record<string, string> }>();
  readonly groups = new Map<string, { name: string; tags: Record<string, string>; rules: string[] }>();
  /** Actions answered UnauthorizedOperation (also for their DryRun). */
  readonly denied = new Set<string>();
  /** Answer every call AuthFailure, as EC2 does to credentials it does not know. */
  rejectCredentials = false;
  /** The private key CreateKeyPair returns. */
  keyMaterial = '-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----';
  /** Actions to fail with RequestLimitExceeded this many more times. */
  readonly throttle = new Map<string, number>();
  /** Whether console output carries cloud-init's host key block. */
  hostKeysOnConsole = true;
  /** Instance n (1-based) gets public address 127.0.0.<firstHost + n - 1>. */
  firstHost = 1;
  /** The host key the instances' consoles print (`type base64`). */
  hostKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY';
  #next = 1;
  #server: Server | undefined;
  #endpoint = '';

  /** A client with fake credentials that talks to this fake (after listen()). */
  client(): EC2Client {
    return new EC2Client({
      region: 'us-east-1',
      endpoint: this.#endpoint,
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
      maxAttempts: 4,
    });
  }

  actions(): string[] {
    return this.calls.map((c) => c.action);
  }

  live(): FakeInstance[] {
    return this.instances.filter((i) => i.state === 'running');
  }

  /** Serve on 127.0.0.1; resolves with the endpoint URL. */
  async listen(): Promise<string> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const [status, body] = this.#answer(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(status, { 'content-type': 'text/xml' }).end(body);
      });
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.#endpoint = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.#endpoint;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => (this.#server ? this.#server.close(resolve) : resolve(undefined)));
  }

  #answer(params: URLSearchParams): [number, string] {
    const action = params.get('Action')!;
    const flat = Object.fromEntries(params);
    this.calls.push({ action, params: flat });
    const left = this.throttle.get(action) ?? 0;
    if (left > 0) {
      this.throttle.set(action, left - 1);
      return error(503, 'RequestLimitExceeded', 'Request limit exceeded.');
    }
    if (this.rejectCredentials) return error(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    if (this.denied.has(action)) return error(403, 'UnauthorizedOperation', `You are not authorized to perform this operation (${action}).`);
    if (flat.DryRun === 'true') return error(412, 'DryRunOperation', 'Request would have succeeded, but DryRun flag is set.');
    switch (action) {
      case 'DescribeKeyPairs':
        return this.#describeKeyPairs(flat);
      case 'CreateKeyPair': {
        const id = `key-${this.#next++}`;
        this.keyPairs.set(flat.KeyName!, { id, tags: tagsOf(flat, 'TagSpecification.1.') });
        return ok(action, `<keyName>${flat.KeyName}</keyName><keyPairId>${id}</keyPairId><keyFingerprint>ff</keyFingerprint><keyMaterial>${this.keyMaterial}</keyMaterial>`);
      }
      case 'DeleteKeyPair':
        for (const [name, key] of this.keyPairs) if (key.id === flat.KeyPairId) this.keyPairs.delete(name);
        return ok(action, '<return>true</return>');
      case 'DescribeSecurityGroups': {
        const name = filterValues(flat, 'group-name')[0];
        const items = [...this.groups].filter(([, g]) => g.name === name).map(([id, g]) => `<item><groupId>${id}</groupId><groupName>${g.name}</groupName></item>`);
        return ok(action, `<securityGroupInfo>${items.join('')}</securityGroupInfo>`);
      }
      case 'CreateSecurityGroup': {
        const id = `sg-${this.#next++}`;
        this.groups.set(id, { name: flat.GroupName!, tags: tagsOf(flat, 'TagSpecification.1.'), rules: [] });
        return ok(action, `<groupId>${id}</groupId><return>true</return>`);
      }
      case 'AuthorizeSecurityGroupIngress': {
        const group = this.groups.get(flat.GroupId!)!;
        const rules = rulesOf(flat);
        if (rules.some((r) => group.rules.includes(r))) return error(400, 'InvalidPermission.Duplicate', 'the specified rule already exists');
        group.rules.push(...rules);
        return ok(action, '<return>true</return>');
      }
      case 'DeleteSecurityGroup':
        if (this.live().length > 0) return error(400, 'DependencyViolation', 'resource has a dependent object');
        this.groups.delete(flat.GroupId!);
        return ok(action, '<return>true</return>');
      case 'DescribeImages':
        return ok(
          action,
          '<imagesSet><item><imageId>ami-0aaa</imageId><name>ubuntu-noble-old</name><creationDate>2026-01-01T00:00:00.000Z</creationDate></item>' +
            '<item><imageId>ami-0bbb</imageId><name>ubuntu-noble-new</name><creationDate>2026-10-01T00:00:00.000Z</creationDate></item></imagesSet>',
        );
      case 'RunInstances': {
        const n = this.instances.length + 1;
        const instance: FakeInstance = {
          id: `i-${String(n).padStart(8, '0')}`,
          state: 'running',
          publicIp: `127.0.0.${this.firstHost + n - 1}`,
          privateIp: `10.0.0.${n}`,
          tags: tagsOf(flat, 'TagSpecification.1.'),
          userData: Buffer.from(flat.UserData ?? '', 'base64').toString('utf8'),
        };
        this.instances.push(instance);
        return ok(action, `<reservationId>r-${n}</reservationId><instancesSet>${instanceXml(instance)}</instancesSet>`);
      }
      case 'DescribeInstances':
        return this.#describeInstances(flat);
      case 'TerminateInstances': {
        const ids = Object.entries(flat).filter(([k]) => k.startsWith('InstanceId.')).map(([, v]) => v);
        for (const i of this.instances) if (ids.includes(i.id)) i.state = 'terminated';
        return ok(action, `<instancesSet>${ids.map((id) => `<item><instanceId>${id}</instanceId><currentState><code>32</code><name>shutting-down</name></currentState></item>`).join('')}</instancesSet>`);
      }
      case 'GetConsoleOutput': {
        const text = this.hostKeysOnConsole
          ? `boot\n-----BEGIN SSH HOST KEY KEYS-----\n${this.hostKey} root@ip\n-----END SSH HOST KEY KEYS-----\n`
          : 'booting\n';
        return ok(action, `<instanceId>${flat.InstanceId}</instanceId><output>${Buffer.from(text).toString('base64')}</output>`);
      }
      default:
        return error(400, 'InvalidAction', `the fake does not know ${action}`);
    }
  }

  #describeKeyPairs(flat: Record<string, string>): [number, string] {
    const names = Object.entries(flat).filter(([k]) => k.startsWith('KeyName.')).map(([, v]) => v);
    const cluster = filterValues(flat, 'tag:io.inference-orchestrator.cluster')[0];
    const found = [...this.keyPairs].filter(([name, key]) => (names.length > 0 ? names.includes(name) : key.tags['io.inference-orchestrator.cluster'] === cluster));
    if (names.length > 0 && found.length === 0) return error(400, 'InvalidKeyPair.NotFound', `The key pair '${names[0]}' does not exist`);
    return ok('DescribeKeyPairs', `<keySet>${found.map(([name, key]) => `<item><keyName>${name}</keyName><keyPairId>${key.id}</keyPairId></item>`).join('')}</keySet>`);
  }

  #describeInstances(flat: Record<string, string>): [number, string] {
    const ids = Object.entries(flat).filter(([k]) => k.startsWith('InstanceId.')).map(([, v]) => v);
    const states = filterValues(flat, 'instance-state-name');
    const tagFilters = Object.entries(flat)
      .filter(([k, v]) => /^Filter\.\d+\.Name$/.test(k) && v.startsWith('tag:'))
      .map(([k, v]) => ({ key: v.slice(4), values: filterValues(flat, v), index: k }));
    const matching = this.instances.filter(
      (i) =>
        (ids.length === 0 || ids.includes(i.id)) &&
        (states.length === 0 || states.includes(i.state)) &&
        tagFilters.every((f) => f.values.includes(i.tags[f.key] ?? '')),
    );
    const reservations = matching.map((i, n) => `<item><reservationId>r-${n}</reservationId><instancesSet>${instanceXml(i)}</instancesSet></item>`);
    return ok('DescribeInstances', `<reservationSet>${reservations.join('')}</reservationSet>`);
  }
}

/**
 * The environment of a CLI run against the fake: `env` over cleanEnv without any AWS_* variable
 * of the machine, and never its shared profile or the instance metadata service.
 */
export function fakeAwsEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const machine = Object.fromEntries(Object.entries(cleanEnv).filter(([key]) => !key.startsWith('AWS_')));
  return {
    ...machine,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    ...env,
  };
}

function ok(action: string, inner: string): [number, string] {
  return [200, `<?xml version="1.0" encoding="UTF-8"?><${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req-1</requestId>${inner}</${action}Response>`];
}

function error(status: number, code: string, message: string): [number, string] {
  return [status, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>req-1</RequestID></Response>`];
}

/** The values of the filter named `name` (Filter.N.Name / Filter.N.Value.M). */
export function filterValues(flat: Record<string, string>, name: string): string[] {
  const entry = Object.entries(flat).find(([k, v]) => /^Filter\.\d+\.Name$/.test(k) && v === name);
  if (!entry) return [];
  const prefix = entry[0].replace(/Name$/, 'Value.');
  return Object.entries(flat).filter(([k]) => k.startsWith(prefix)).map(([, v]) => v);
}

/** Tags of a TagSpecification (prefix `TagSpecification.1.`). */
export function tagsOf(flat: Record<string, string>, prefix: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(flat)) {
    const m = new RegExp(`^${prefix.replace(/\./g, '\\.')}Tag\\.(\\d+)\\.Key$`).exec(k);
    if (m) tags[v] = flat[`${prefix}Tag.${m[1]}.Value`] ?? '';
  }
  return tags;
}

/** `tcp 22-22 from 203.0.113.7/32` for each ingress rule of an AuthorizeSecurityGroupIngress call. */
export function rulesOf(flat: Record<string, string>): string[] {
  const rules: string[] = [];
  for (let n = 1; flat[`IpPermissions.${n}.IpProtocol`]; n++) {
    const p = `IpPermissions.${n}.`;
    for (let r = 1; flat[`${p}IpRanges.${r}.CidrIp`]; r++) rules.push(`${flat[`${p}IpProtocol`]} ${flat[`${p}FromPort`]}-${flat[`${p}ToPort`]} from ${flat[`${p}IpRanges.${r}.CidrIp`]}`);
  }
  return rules;
}

function instanceXml(i: FakeInstance): string {
  const code = i.state === 'running' ? 16 : 48;
  const tags = Object.entries(i.tags).map(([key, value]) => `<item><key>${key}</key><value>${value}</value></item>`).join('');
  return `<item><instanceId>${i.id}</instanceId><instanceState><code>${code}</code><name>${i.state}</name></instanceState><ipAddress>${i.publicIp}</ipAddress><privateIpAddress>${i.privateIp}</privateIpAddress><tagSet>${tags}</tagSet></item>`;
}
