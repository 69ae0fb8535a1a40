export interface ImageExecutorSchema {
  imageName: string;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  output: string;
  flatten?: boolean;
  verify?: boolean;
  qcow2Compat?: '0.10' | '1.1';
  blobs?: boolean;
}
