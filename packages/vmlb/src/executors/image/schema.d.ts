export interface ImageExecutorSchema {
  imageName: string;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  output: string;
  flatten?: boolean;
  verify?: boolean;
  blobs?: boolean;
}
