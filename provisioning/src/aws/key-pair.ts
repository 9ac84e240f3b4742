import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CreateKeyPairCommand, DeleteKeyPairCommand, DescribeKeyPairsCommand } from '@aws-sdk/client-ec2';
import type { ProvisionConfig } from '../config.js';
import { awsCode, KeyPairError, toAwsError } from './aws-errors.js';
import { awsCall, clusterTags, keysDir, TAGS, type Ec2Context } from './ec2-context.js';

/** The key pair instances are launched with, and where its private key is. */
export interface KeyPair {
  name: string;
  path: string;
}

/** The name of the key pair provisioning creates when none is configured. */
export function createdKeyName(config: ProvisionConfig): string {
  return `${config.cluster}-workers`;
}

/** Where the private key is: sshKeyPath, else the one provisioning saved. */
export function keyPath(config: ProvisionConfig): string {
  return resolve(config.sshKeyPath ?? join(keysDir(config), `${config.cluster}.pem`));
}

/** Whether EC2 has a key pair of that name. */
export async function keyPairExists(ctx: Ec2Context, name: string): Promise<boolean> {
  try {
    const found = await ctx.ec2.send(new DescribeKeyPairsCommand({ KeyNames: [name] }));
    return (found.KeyPairs ?? []).length > 0;
  } catch (error) {
    if (awsCode(error) === 'InvalidKeyPair.NotFound') return false;
    throw toAwsError('DescribeKeyPairs', error);
  }
}

/** The configured key pair (its private key must be here), or ours: created once, its private key saved at mode 0600. */
export async function ensureKeyPair(ctx: Ec2Context): Promise<KeyPair> {
  const { config } = ctx;
  const path = keyPath(config);
  if (config.keyName) {
    if (!(await keyPairExists(ctx, config.keyName))) throw new KeyPairError(`key pair ${config.keyName} does not exist in EC2`);
    await readFile(path).catch(() => {
      throw new KeyPairError(`cannot read the private key of key pair ${config.keyName} at ${path}`);
    });
    return { name: config.keyName, path };
  }
  const name = createdKeyName(config);
  if (await keyPairExists(ctx, name)) {
    const present = await readFile(path).then(() => true, () => false);
    if (!present) throw new KeyPairError(`key pair ${name} exists in EC2 but its private key is not at ${path}; teardown deletes it, or name another with keyName and sshKeyPath`);
    return { name, path };
  }
  const created = await awsCall('CreateKeyPair', () =>
    ctx.ec2.send(
      new CreateKeyPairCommand({
        KeyName: name,
        KeyType: 'ed25519',
        TagSpecifications: [{ ResourceType: 'key-pair', Tags: clusterTags(config, { [TAGS.createdBy]: 'provisioning' }) }],
      }),
    ),
  );
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, created.KeyMaterial ?? '', { mode: 0o600 });
  await chmod(path, 0o600);
  ctx.say(`created key pair ${name}; private key in ${path}`);
  return { name, path };
}

/** Delete the key pairs provisioning created for the cluster (found by tag), and their private keys here. */
export async function deleteKeyPairs(ctx: Ec2Context): Promise<void> {
  const found = await awsCall('DescribeKeyPairs', () =>
    ctx.ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [ctx.config.cluster] }] })),
  );
  for (const created of found.KeyPairs ?? []) {
    await awsCall('DeleteKeyPair', () => ctx.ec2.send(new DeleteKeyPairCommand({ KeyName: created.KeyName })));
    await rm(keyPath(ctx.config), { force: true });
  }
}
