export interface ImageExecutorSchema {
  imageName: string;
  /** A layer folder, its number, or `base`: the chain ends there. */
  upTo?: string | number;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  output: string;
  flatten?: boolean;
  verify?: boolean;
  qcow2Compat?: '0.10' | '1.1';
  blobs?: boolean;
}
