/** How vmlb's modules report progress: one message at a time, each a line (or a few). */

/** Where a module writes its progress messages (in executors, console.log). */
export type Log = (message: string) => void;
