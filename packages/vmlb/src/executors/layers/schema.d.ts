export interface LayersExecutorSchema {
  imageName: string;
  imageRoot: string;
  distDir: string;
  json?: boolean;
}
