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
  blobs?: boolean;
}
