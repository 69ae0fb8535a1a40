export interface ImageExecutorSchema {
  imageName: string;
  chain: string;
  output: string;
  flatten?: boolean;
  blobs?: boolean;
}
