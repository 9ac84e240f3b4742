import { RunInstancesCommand, type RunInstancesCommandInput, type Tag } from '@aws-sdk/client-ec2';
import type { ProvisionConfig } from '../config.js';
import { containerTemplate } from '../inventory.js';
import { awsCall, clusterTags, TAGS, workerPorts, type Ec2Context } from './ec2-context.js';
import type { Ami } from './images.js';
import { workerUserData } from './user-data.js';

/** What one instance of the cluster (a worker, or the orchestrator's) is launched with. */
export interface InstanceLaunch {
  ami: Pick<Ami, 'id' | 'rootDevice'>;
  instanceType: string;
  key: string;
  groupId: string;
  tags: Tag[];
  userData: string;
}

/**
 * RunInstances of one instance, hardened as AWS's own security checks expect: IMDSv2 only, with
 * hop limit 1, which still reaches the containers since they share the instance's network stack
 * (host networking); no instance profile, so IMDS holds no credentials; one encrypted gp3 root
 * volume, deleted with the instance and tagged like it.
 */
export function instanceLaunch(config: Pick<ProvisionConfig, 'rootVolumeGb'>, launch: InstanceLaunch): RunInstancesCommandInput {
  return {
    ImageId: launch.ami.id,
    InstanceType: launch.instanceType as never,
    MinCount: 1,
    MaxCount: 1,
    KeyName: launch.key,
    SecurityGroupIds: [launch.groupId],
    UserData: Buffer.from(launch.userData).toString('base64'),
    MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
    BlockDeviceMappings: [
      { DeviceName: launch.ami.rootDevice, Ebs: { VolumeType: 'gp3', VolumeSize: config.rootVolumeGb, Encrypted: true, DeleteOnTermination: true } },
    ],
    TagSpecifications: [
      { ResourceType: 'instance', Tags: launch.tags },
      { ResourceType: 'volume', Tags: launch.tags },
    ],
  };
}

/** Launch worker `workerId`'s instance, tagged with the cluster, whose user-data compose-starts its model containers; its instance id. */
export async function launchWorker(ctx: Ec2Context, workerId: string, with_: { key: string; groupId: string; ami: Ami }): Promise<string> {
  const { config } = ctx;
  const { env, resources } = containerTemplate(config);
  const userData = workerUserData({
    cluster: config.cluster,
    workerId,
    image: config.workerImage,
    imageSource: config.uploadImage ? 'upload' : 'registry',
    sshUser: config.sshUser,
    ports: workerPorts(config),
    env,
    resources,
  });
  const tags = clusterTags(config, { [TAGS.role]: 'worker', [TAGS.worker]: workerId, Name: `${config.cluster}-${workerId}` });
  // No ClientToken of ours: the SDK puts a fresh one in each call, which its own retries resend (a
  // lost answer does not launch twice). One per worker would not do: a released worker is launched
  // again, and EC2 answers a token seen within a day with the old (terminated) instance.
  const launched = await awsCall('RunInstances', () =>
    ctx.ec2.send(new RunInstancesCommand(instanceLaunch(config, { ...with_, instanceType: config.instanceType, tags, userData }))),
  );
  return launched.Instances![0]!.InstanceId!;
}
