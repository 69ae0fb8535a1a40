import type { ExportFormat } from '../../lib/export/disk-export';

export interface FlattenExecutorSchema {
  imageName: string;
  /** A layer folder, its number, or `base`: the chain ends there. */
  upTo?: string | number;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  outputDir: string;
  format?: ExportFormat;
  compress?: boolean;
  vmdkSubformat?: 'monolithicSparse' | 'streamOptimized';
  sha256?: boolean;
  sbom?: boolean;
  distro?: string;
  cpus?: number;
  memory?: number;
  layerFormat?: number;
  qcow2Compat?: '0.10' | '1.1';
  blobs?: boolean;
}
