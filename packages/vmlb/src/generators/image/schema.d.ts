// Nx's command line hands numeric-looking arguments (`nx g vmlb:image 2024`,
// `--empty 1073741824`) to generators as numbers, hence `| number` below.
export interface ImageGeneratorSchema {
  /** The image's folder name (under `directory`); also part of its Nx project names. */
  name: string | number;
  /** http://, https:// or file:// URL of the base disk to download; needs `sha256`. */
  baseUrl?: string;
  /** SHA-256 of the file `baseUrl` downloads (64 hexadecimal digits). */
  sha256?: string;
  /** A local qcow2 or raw disk file, relative to the image folder or absolute. */
  basePath?: string;
  /** Virtual size of a blank base disk, e.g. `4G`, or bytes. The default when no other base is given. */
  empty?: string | number;
  /** The folder the image folder is created in, relative to the workspace. Default `images`. */
  directory?: string;
  /** Leave the new files as written instead of running the workspace's formatter. */
  skipFormat?: boolean;
}
