export interface DiffExecutorSchema {
  imageName: string;
  imageRoot: string;
  distDir: string;
  from?: string;
  to?: string;
  json?: boolean;
  shell?: boolean;
  blobs?: boolean;
}
