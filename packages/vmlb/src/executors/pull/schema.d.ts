export interface PullExecutorSchema {
  imageName: string;
  chain: string;
}
