export interface ShellExecutorSchema {
  imageName: string;
  imageRoot: string;
  distDir: string;
  /** A layer folder, its number (Nx reads `--layer 10` as a number), or `base`. */
  layer?: string | number;
  /** What followed the target on the command line, as typed: leading `--layer` options, then the command. */
  args?: string[];
  blobs?: boolean;
}
