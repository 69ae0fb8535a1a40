export interface SbomExecutorSchema {
  imageName: string;
  imageRoot: string;
  distDir: string;
  output?: string;
  distro?: string;
}
