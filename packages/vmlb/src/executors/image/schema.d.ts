export interface ImageExecutorSchema {
  imageName: string;
  chain: string;
  output: string;
  flatten?: boolean;
  verify?: boolean;
  blobs?: boolean;
}
