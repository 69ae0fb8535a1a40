export interface BaseExecutorSchema {
  imageName: string;
  base: { url?: string; sha256?: string; path?: string; empty?: string };
  output: string;
  downloadCache?: string;
  layerFormat?: number;
  qcow2Compat?: '0.10' | '1.1';
  blobs?: boolean;
}
