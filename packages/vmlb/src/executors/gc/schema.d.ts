export interface GcExecutorSchema {
  keep?: number;
  dryRun?: boolean;
  cacheMountsMaxSize?: string;
}
