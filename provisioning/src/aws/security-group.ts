import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  DeleteSecurityGroupCommand,
  DescribeSecurityGroupsCommand,
  RevokeSecurityGroupIngressCommand,
  type IpPermission,
  type SecurityGroup,
  type UserIdGroupPair,
} from '@aws-sdk/client-ec2';
import { pollWithin } from '../../../common/src/poll-until.js';
import type { ProvisionConfig } from '../config.js';
import { awsCode, SecurityGroupInUseError, toAwsError } from './aws-errors.js';
import { awsCall, clusterTags, TAGS, workerPortRange, type Ec2Context } from './ec2-context.js';

/** The workers' security group. */
export function workerGroupName(config: ProvisionConfig): string {
  return `${config.cluster}-workers`;
}

/**
 * The workers' group: SSH from sshCidr, the model ports from orchestratorCidr; or, with the
 * orchestrator, the model ports and SSH (its Docker driver) from the orchestrator's group.
 */
export function workerRules(config: ProvisionConfig, orchestrator?: UserIdGroupPair): IpPermission[] {
  const { first, last } = workerPortRange(config);
  const ssh: IpPermission = { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: config.sshCidr!, Description: 'SSH from the operator' }] };
  if (orchestrator) {
    return [
      { ...ssh, UserIdGroupPairs: [{ ...orchestrator, Description: 'Docker over SSH from the orchestrator' }] },
      { IpProtocol: 'tcp', FromPort: first, ToPort: last, UserIdGroupPairs: [{ ...orchestrator, Description: 'model ports from the orchestrator' }] },
    ];
  }
  const cidr = config.orchestratorCidr ?? config.sshCidr!;
  return [ssh, { IpProtocol: 'tcp', FromPort: first, ToPort: last, IpRanges: [{ CidrIp: cidr, Description: 'model ports from the orchestrator' }] }];
}

/** The cluster's group of that name, if any. */
export async function findGroup(ctx: Ec2Context, name: string): Promise<SecurityGroup | undefined> {
  const found = await awsCall('DescribeSecurityGroups', () =>
    ctx.ec2.send(
      new DescribeSecurityGroupsCommand({
        Filters: [
          { Name: 'group-name', Values: [name] },
          { Name: `tag:${TAGS.cluster}`, Values: [ctx.config.cluster] },
        ],
      }),
    ),
  );
  return found.SecurityGroups?.[0];
}

/**
 * The group `name` with exactly `rules`: created once, missing rules added and others revoked on
 * every run (a changed CIDR, or the model ports moving between a CIDR and the orchestrator's group).
 */
export async function ensureSecurityGroup(ctx: Ec2Context, name: string, description: string, rules: IpPermission[]): Promise<string> {
  const group = await findGroup(ctx, name);
  let groupId = group?.GroupId;
  if (!groupId) {
    const created = await awsCall('CreateSecurityGroup', () =>
      ctx.ec2.send(
        new CreateSecurityGroupCommand({
          GroupName: name,
          Description: description,
          TagSpecifications: [{ ResourceType: 'security-group', Tags: clusterTags(ctx.config, { [TAGS.createdBy]: 'provisioning' }) }],
        }),
      ),
    );
    groupId = created.GroupId!;
    ctx.say(`created security group ${name} (${groupId})`);
  }
  const have = singleSourceRules(group?.IpPermissions ?? []);
  const want = singleSourceRules(rules);
  const missing = [...want].filter(([key]) => !have.has(key)).map(([, rule]) => rule);
  const stale = [...have].filter(([key]) => !want.has(key)).map(([, rule]) => rule);
  if (missing.length > 0) {
    try {
      await ctx.ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: missing }));
    } catch (error) {
      if (awsCode(error) !== 'InvalidPermission.Duplicate') throw toAwsError('AuthorizeSecurityGroupIngress', error);
    }
  }
  if (stale.length > 0) {
    ctx.say(`security group ${name}: revoking ${stale.map(describeRule).join('; ')}`);
    await awsCall('RevokeSecurityGroupIngress', () => ctx.ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: stale })));
  }
  return groupId;
}

/** The group stays in use for a while after its instances terminated: retry DependencyViolation up to launchTimeoutMs, then name the group. */
export async function deleteGroup(ctx: Ec2Context, groupId: string): Promise<void> {
  const timeoutMs = ctx.config.launchTimeoutMs;
  let inUse: unknown;
  const deleted = await pollWithin(
    async (round) => {
      try {
        await ctx.ec2.send(new DeleteSecurityGroupCommand({ GroupId: groupId }));
        return true;
      } catch (error) {
        if (awsCode(error) !== 'DependencyViolation') throw toAwsError('DeleteSecurityGroup', error);
        inUse = error;
        if (round === 0) ctx.say(`security group ${groupId} is still in use; retrying for up to ${timeoutMs} ms`);
        ctx.log.info({ groupId }, 'security group still in use; retrying');
        return undefined;
      }
    },
    { timeoutMs, intervalMs: ctx.pollMs },
  );
  if (!deleted) {
    // Named in the error, for the operator to find; a failed describe leaves just the id.
    const name = await ctx.ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [groupId] })).then(
      (answer) => answer.SecurityGroups?.[0]?.GroupName,
      () => undefined,
    );
    throw new SecurityGroupInUseError(name ? `${name} (${groupId})` : groupId, timeoutMs, inUse);
  }
}

/** A rule as the operator reads it, e.g. `tcp 22 from 203.0.113.7/32`. */
export function describeRule(rule: IpPermission): string {
  const ports = rule.FromPort === rule.ToPort ? `${rule.FromPort}` : `${rule.FromPort}-${rule.ToPort}`;
  const sources = [...(rule.IpRanges ?? []).map((r) => r.CidrIp), ...(rule.UserIdGroupPairs ?? []).map((p) => `security group ${p.GroupName ?? p.GroupId}`)];
  return `tcp ${ports} from ${sources.join(', ')}`;
}

/** Rules one source each (an IPv4 range or a group), keyed by protocol, ports and source: what a group has and what it should have compare. */
function singleSourceRules(rules: IpPermission[]): Map<string, IpPermission> {
  const single = new Map<string, IpPermission>();
  for (const { IpProtocol, FromPort, ToPort, IpRanges, UserIdGroupPairs } of rules) {
    const ports = { IpProtocol, FromPort, ToPort };
    for (const range of IpRanges ?? []) single.set(`${IpProtocol}:${FromPort}-${ToPort}:${range.CidrIp}`, { ...ports, IpRanges: [range] });
    for (const pair of UserIdGroupPairs ?? []) single.set(`${IpProtocol}:${FromPort}-${ToPort}:${pair.GroupId}`, { ...ports, UserIdGroupPairs: [{ GroupId: pair.GroupId, Description: pair.Description }] });
  }
  return single;
}
