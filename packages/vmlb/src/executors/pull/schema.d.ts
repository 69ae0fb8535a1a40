export interface PullExecutorSchema {
  imageName: string;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
}
