export interface LayersExecutorSchema {
  imageName: string;
  imageRoot: string;
  distDir: string;
  json?: boolean;
  remote?: boolean;
  blobs?: boolean;
}
