export interface LayerExecutorSchema {
  imageName: string;
  layer: string;
  layerDir: string;
  script: string;
  parent: string;
  output: string;
  rootPartition?: number;
  nbd?: string;
  layerFormat?: number;
  cacheSalt?: string;
  blobs?: boolean;
}
