import { DescribeImagesCommand } from '@aws-sdk/client-ec2';
import { ConfigError } from '../../../common/src/errors.js';
import { awsCode } from './aws-errors.js';
import { awsCall, type Ec2Context } from './ec2-context.js';

/** Canonical's account, and its Ubuntu 24.04 LTS amd64 server images. */
export const UBUNTU_OWNER = '099720109477';
const UBUNTU_NAME = 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*';

/** The image instances boot, and the device its root volume is on. */
export interface Ami {
  id: string;
  name: string;
  rootDevice: string;
}

/** The configured amiId, else the newest Ubuntu 24.04 amd64 server image of Canonical; a ConfigError when the region has neither. */
export async function findAmi(ctx: Ec2Context): Promise<Ami> {
  const amiId = ctx.config.amiId;
  const images = await awsCall('DescribeImages', async () => {
    try {
      return await ctx.ec2.send(
        amiId
          ? new DescribeImagesCommand({ ImageIds: [amiId] })
          : new DescribeImagesCommand({
              Owners: [UBUNTU_OWNER],
              Filters: [
                { Name: 'name', Values: [UBUNTU_NAME] },
                { Name: 'state', Values: ['available'] },
                { Name: 'architecture', Values: ['x86_64'] },
              ],
            }),
      );
    } catch (error) {
      if (amiId && awsCode(error)?.startsWith('InvalidAMIID.')) return { Images: [] };
      throw error;
    }
  });
  const region = await ctx.ec2.config.region();
  const newest = (images.Images ?? []).sort((a, b) => String(b.CreationDate).localeCompare(String(a.CreationDate)))[0];
  if (!newest?.ImageId) {
    throw new ConfigError(
      amiId
        ? `amiId: expected an image of region ${region}, received ${amiId}, which does not exist there (or is not shared with this account)`
        : `amiId: expected an image: none given, and no Ubuntu 24.04 amd64 server image of Canonical (owner ${UBUNTU_OWNER}) is available in region ${region}`,
    );
  }
  if (!newest.RootDeviceName) throw new ConfigError(`amiId: expected an EBS-backed image, received ${newest.ImageId}, which names no root device`);
  return { id: newest.ImageId, name: newest.Name ?? '', rootDevice: newest.RootDeviceName };
}
