// Nx's command line hands numeric-looking arguments to generators as numbers, hence `| number`.
export interface ImportSeedGeneratorSchema {
  /** The vm-layer-builder checkout: the folder with SConstruct and the NN_name layer folders. */
  checkout: string;
  /** The new image's name: its folder under `directory` and part of its Nx project names. */
  image: string | number;
  /** The folder the image folder is created in, relative to the workspace. Default `images`. */
  directory?: string;
  /** SHA-256 of the file SConstruct's download_base_image() downloads (64 hexadecimal digits). */
  sha256?: string;
  /** A base download of its own instead of SConstruct's; needs `sha256`. */
  baseUrl?: string;
  /** A local qcow2 or raw disk file instead of SConstruct's base, relative to the image folder or absolute. */
  basePath?: string;
  /** Leave the new files as written instead of running the workspace's formatter. */
  skipFormat?: boolean;
}
