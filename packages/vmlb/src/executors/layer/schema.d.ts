export interface LayerExecutorSchema {
  imageName: string;
  layer: string;
  layerDir: string;
  script: string;
  parent: string;
  output: string;
  rootPartition?: number;
  projectOutputs?: Array<{ project: string; target: string; mountPoint: string }>;
  nbd?: string;
  layerFormat?: number;
  cacheSalt?: string;
  keyedEnvDefaults?: Record<string, string>;
  qcow2Compat?: '0.10' | '1.1';
  blobs?: boolean;
}
