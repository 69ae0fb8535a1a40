export interface FlattenExecutorSchema {
  imageName: string;
  chain: string;
  output: string;
  format?: 'qcow2' | 'raw' | 'vmdk' | 'vhdx' | 'vdi' | 'vpc';
  compress?: boolean;
  ova?: boolean;
  blobs?: boolean;
}
