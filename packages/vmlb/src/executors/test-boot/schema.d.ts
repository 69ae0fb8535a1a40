export interface TestBootExecutorSchema {
  imageName: string;
  /** A layer folder, its number, or `base`: the chain ends there. */
  upTo?: string | number;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  image?: string;
  cloudInitDir?: string;
  check?: boolean;
  expect?: string;
  timeout?: number;
  ssh?: string;
  sshUser?: string;
  memory?: string;
  cpus?: number;
  sshPort?: number;
  blobs?: boolean;
}
