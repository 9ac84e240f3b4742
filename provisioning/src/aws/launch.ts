import type { RunInstancesCommandInput, Tag } from '@aws-sdk/client-ec2';
import type { ProvisionConfig } from '../config.js';

/** What one instance of the cluster (a worker, or the orchestrator's) is launched with. */
export interface InstanceLaunch {
  ami: { id: string; rootDevice: string };
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
