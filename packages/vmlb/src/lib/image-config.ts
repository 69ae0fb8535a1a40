import { readFileSync } from 'node:fs';
import Ajv, { type ErrorObject } from 'ajv';
import imageSchema from '../schemas/image.schema.json';
import { parseSize } from './units';

/** Where an image's base disk comes from. */
export type BaseSpec =
  | { kind: 'url'; url: string; sha256: string }
  | { kind: 'path'; path: string }
  | { kind: 'empty'; size: string; bytes: number };

export interface TestBootConfig {
  memory?: string;
  cpus?: number;
  sshPort?: number;
  expect?: string;
  timeout?: number;
}

/** image.json, validated and normalised. */
export interface ImageConfig {
  base: BaseSpec;
  rootPartition?: number;
  testBoot: TestBootConfig;
}

/** image.json is missing, not JSON, or does not follow the schema. */
export class ImageConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageConfigError';
  }
}

const validate = new Ajv({ allErrors: true, strict: false }).compile(imageSchema);

/** Reads and validates an image.json; `displayPath` is the path shown in errors. */
export function readImageConfig(filePath: string, displayPath = filePath): ImageConfig {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch (error) {
    throw new ImageConfigError(`${displayPath}: cannot be read (${(error as Error).message}).`);
  }
  return parseImageConfig(text, displayPath);
}

/** Parses and validates the text of an image.json. */
export function parseImageConfig(text: string, displayPath: string): ImageConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ImageConfigError(`${displayPath} is not valid JSON: ${(error as Error).message}`);
  }
  if (!validate(raw)) {
    throw new ImageConfigError(`${displayPath} does not match the image schema:\n${describeErrors(validate.errors ?? [], raw)}`);
  }
  const config = raw as {
    base: { url?: string; sha256?: string; path?: string; empty?: string };
    rootPartition?: number;
    testBoot?: TestBootConfig;
  };
  return {
    base: normalizeBase(config.base, displayPath),
    ...(config.rootPartition !== undefined ? { rootPartition: config.rootPartition } : {}),
    testBoot: config.testBoot ?? {},
  };
}

function normalizeBase(base: { url?: string; sha256?: string; path?: string; empty?: string }, displayPath: string): BaseSpec {
  if (base.url !== undefined) return { kind: 'url', url: base.url, sha256: base.sha256!.toLowerCase() };
  if (base.path !== undefined) return { kind: 'path', path: base.path };
  const bytes = parseSize(base.empty!);
  if (bytes === undefined) {
    throw new ImageConfigError(`${displayPath}: base.empty '${base.empty}' is not a disk size (use e.g. "4G").`);
  }
  return { kind: 'empty', size: base.empty!, bytes };
}

/**
 * Turns Ajv's errors into lines a person can act on. The `base` field is a
 * oneOf of three shapes; Ajv reports every branch's complaint, so for it we
 * say which shapes exist instead of listing each branch's failures.
 */
function describeErrors(errors: ErrorObject[], raw: unknown): string {
  const lines = new Set<string>();
  const baseFailed = errors.some((error) => error.instancePath === '/base' && error.keyword === 'oneOf');
  for (const error of errors) {
    const field = fieldName(error);
    if (baseFailed && (field === 'base' || field.startsWith('base.'))) {
      if (error.keyword === 'pattern' || error.keyword === 'type') {
        if (field === 'base.sha256') lines.add(`  - base.sha256 must be 64 hexadecimal digits`);
        else if (field === 'base.url') lines.add(`  - base.url must start with http://, https:// or file://`);
        else if (field === 'base.empty') lines.add(`  - base.empty must be a size such as "4G"`);
        else if (field !== 'base') lines.add(`  - ${field} ${error.message}`);
      }
      continue;
    }
    if (error.keyword === 'additionalProperties') {
      const extra = (error.params as { additionalProperty: string }).additionalProperty;
      lines.add(`  - ${field ? `${field}.` : ''}${extra} is not a known field`);
    } else if (error.keyword === 'required') {
      lines.add(`  - ${field ? `${field}.` : ''}${(error.params as { missingProperty: string }).missingProperty} is required`);
    } else {
      lines.add(`  - ${field || '(top level)'} ${error.message}`);
    }
  }
  if (baseFailed) {
    const base = (raw as { base?: unknown }).base;
    const keys = base && typeof base === 'object' ? Object.keys(base).join(', ') || 'no fields' : JSON.stringify(base);
    lines.add(
      `  - base must be exactly one of {"url": "...", "sha256": "<64 hex digits>"}, {"path": "disk.qcow2"} or {"empty": "4G"} (found: ${keys})`,
    );
  }
  return [...lines].join('\n');
}

function fieldName(error: ErrorObject): string {
  return error.instancePath.replace(/^\//, '').replace(/\//g, '.');
}
