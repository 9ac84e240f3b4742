import { randomUUID } from 'node:crypto';
import nock from 'nock';

/**
 * nock in front of moto, for the two answers the emulator cannot give; every other call reaches
 * moto (allowUnmocked). Importing this module turns nock's interception on in the process: only
 * test files that intercept import it.
 */

/** How nock hands over an EC2 Query API body (form-encoded). */
type Ec2Form = Record<string, string | string[] | undefined>;

const XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** The tail of an Ubuntu instance's first boot as cloud-init prints it on the console, with its SSH host keys. */
export function cloudInitConsole(hostKeys: readonly string[]): string {
  const lines = [
    '[   14.201337] cloud-init[1042]: Cloud-init v. 24.4-0ubuntu1~24.04.2 running \'modules:final\'',
    '<14>Nov 29 12:00:01 ec2: ',
    '<14>Nov 29 12:00:01 ec2: #############################################################',
    '<14>Nov 29 12:00:01 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----',
    '<14>Nov 29 12:00:01 ec2: 256 SHA256:0000000000000000000000000000000000000000000 root@ip-10-0-0-1 (ED25519)',
    '<14>Nov 29 12:00:01 ec2: -----END SSH HOST KEY FINGERPRINTS-----',
    '<14>Nov 29 12:00:01 ec2: #############################################################',
    '-----BEGIN SSH HOST KEY KEYS-----',
    ...hostKeys.map((key) => `${key} root@ip-10-0-0-1`),
    '-----END SSH HOST KEY KEYS-----',
    '[   14.402113] cloud-init[1042]: Cloud-init v. 24.4-0ubuntu1~24.04.2 finished. Datasource DataSourceEc2Local.  Up 14.39 seconds',
  ];
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * GetConsoleOutput answered with cloud-init's host key block for the instances `hostKeysOf` knows
 * keys of, and with a console of an instance still booting (no block yet) for the others. moto's
 * console is a fixed text without the block: an emulator boots no operating system.
 */
export function interceptConsole(endpoint: string, hostKeysOf: (instanceId: string) => readonly string[] | undefined): void {
  nock(endpoint, { allowUnmocked: true })
    .persist()
    .post('/', (form: Ec2Form) => form.Action === 'GetConsoleOutput')
    // nock 15 hands a reply function the request (a fetch Request).
    .reply(async (request: Request) => {
      const instanceId = new URLSearchParams(await request.text()).get('InstanceId') ?? '';
      const keys = hostKeysOf(instanceId);
      const output = keys ? cloudInitConsole(keys) : '[    0.000000] Linux version 6.8.0-1018-aws (buildd@lcy02-amd64-034)\r\n';
      const xml =
        `<?xml version="1.0" encoding="UTF-8"?>\n<GetConsoleOutputResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId>` +
        `<instanceId>${instanceId}</instanceId><timestamp>${new Date().toISOString()}</timestamp>` +
        `<output>${Buffer.from(output).toString('base64')}</output></GetConsoleOutputResponse>`;
      return [200, xml, { 'content-type': 'text/xml;charset=UTF-8' }];
    });
}

/**
 * EC2's answer to credentials that lack the permission for `actions` (their DryRun included):
 * 403 UnauthorizedOperation. moto cannot give it: with its IAM checks on it answers AccessDenied,
 * which EC2 never does.
 */
export function denyActions(endpoint: string, actions: readonly string[]): void {
  nock(endpoint, { allowUnmocked: true })
    .persist()
    .post('/', (form: Ec2Form) => actions.includes(String(form.Action)))
    .reply(403, () => ec2ErrorXml('UnauthorizedOperation', 'You are not authorized to perform this operation.'), { 'content-type': 'text/xml;charset=UTF-8' });
}

/** The body of an EC2 Query API error answer. */
export function ec2ErrorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`;
}

/** Remove every interception made here; calls go to moto again. */
export function stopIntercepting(): void {
  nock.cleanAll();
}
