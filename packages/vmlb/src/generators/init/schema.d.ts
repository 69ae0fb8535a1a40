export interface InitGeneratorSchema {
  /** Leave the changed files as written instead of running the workspace's formatter on them. */
  skipFormat?: boolean;
}
