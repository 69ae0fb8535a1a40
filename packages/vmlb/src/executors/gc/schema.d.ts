export interface GcExecutorSchema {
  keep?: number;
  dryRun?: boolean;
}
