export interface BaseExecutorSchema {
  imageName: string;
  base: { url?: string; sha256?: string; path?: string; empty?: string };
  output: string;
  downloadCache?: string;
  layerFormat?: number;
  blobs?: boolean;
}
