import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import imageSchema from '../../schemas/image.schema.json';
import { parseSize } from '../util/units';
import { type EnvDeclarations, checkEnvDeclarations } from './script-env';
import { type Qcow2Compat, qcow2CompatProblem } from '../disk/qcow2';

/** Where an image's base disk comes from: a download, a local disk, a blank disk, or a layer of another image (a derived image). */
export type BaseSpec =
  | { kind: 'url'; url: string; sha256: string }
  | { kind: 'path'; path: string }
  | { kind: 'empty'; size: string; bytes: number }
  | { kind: 'image'; image: string; layer: string };

/** The other image's layer a derived image builds on, or undefined for an image with a base disk of its own. */
export function derivedBase(config: ImageConfig): { image: string; layer: string } | undefined {
  return config.base.kind === 'image' ? { image: config.base.image, layer: config.base.layer } : undefined;
}

export interface TestBootConfig {
  memory?: string;
  cpus?: number;
  sshPort?: number;
  expect?: string;
  timeout?: number;
}

/** image.json, validated and normalised. */
export interface ImageConfig {
  /** The image's name when it is not its folder's. */
  name?: string;
  base: BaseSpec;
  rootPartition?: number;
  /** Part of every layer's cache key: change it to rebuild all the image's layers on purpose. */
  cacheSalt?: string;
  testBoot: TestBootConfig;
  /** Variables of the build's environment passed to the layer scripts (lib/image/script-env); absent when none is declared. */
  env?: EnvDeclarations;
  /** The compatibility level of every qcow2 the image's build writes: base, layers, qcow2 exports. */
  qcow2Compat?: Qcow2Compat;
}

/** image.json is missing, not JSON, or does not follow the schema. */
export class ImageConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageConfigError';
  }
}

let compiled: ValidateFunction | undefined;
/** The schema's validator, compiled on first use: a task process that reads no image.json never loads Ajv. */
function validator(): ValidateFunction {
  if (!compiled) {
    const { default: Ajv } = require('ajv') as typeof import('ajv');
    compiled = new Ajv({ allErrors: true, strict: false }).compile(imageSchema);
  }
  return compiled;
}

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

/**
 * Only the `env` declarations of an image.json, checked on their own: what
 * a layer task needs at run time. The whole file was validated when Nx
 * built the project graph of the same run, and a task process spared Ajv
 * starts sooner.
 */
export function readImageEnv(filePath: string, displayPath = filePath): EnvDeclarations {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(filePath, 'utf8'));
  } catch {
    // Unreadable or not JSON: the full read says which, in its own words.
    return readImageConfig(filePath, displayPath).env ?? {};
  }
  const envCheck = checkEnvDeclarations(raw && typeof raw === 'object' ? (raw as { env?: unknown }).env : undefined);
  if (envCheck.problems.length) {
    throw new ImageConfigError(`${displayPath} does not match the image schema:\n${envCheck.problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
  return envCheck.env;
}

/** Parses and validates the text of an image.json. */
export function parseImageConfig(text: string, displayPath: string): ImageConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ImageConfigError(`${displayPath} is not valid JSON: ${describeJsonError(text, (error as Error).message)}`);
  }
  // env and qcow2Compat are checked on their own, for messages that name the bad name or value and the fix.
  const fields = raw && typeof raw === 'object' ? (raw as { env?: unknown; qcow2Compat?: unknown }) : {};
  const envCheck = checkEnvDeclarations(fields.env);
  const compatProblem = fields.qcow2Compat === undefined ? undefined : qcow2CompatProblem(fields.qcow2Compat);
  const ownChecks = ['#/properties/env/', '#/properties/qcow2Compat/'];
  const validate = validator();
  const schemaErrors = validate(raw) ? [] : (validate.errors ?? []).filter((error) => !ownChecks.some((prefix) => error.schemaPath.startsWith(prefix)));
  const problems = [...envCheck.problems, ...(compatProblem ? [`qcow2Compat ${compatProblem}`] : [])];
  if (schemaErrors.length || problems.length) {
    const lines = [describeErrors(schemaErrors, raw), ...problems.map((problem) => `  - ${problem}`)].filter(Boolean);
    throw new ImageConfigError(`${displayPath} does not match the image schema:\n${lines.join('\n')}`);
  }
  const config = raw as {
    name?: string;
    base: RawBase;
    rootPartition?: number;
    cacheSalt?: string;
    testBoot?: TestBootConfig;
    qcow2Compat?: Qcow2Compat;
  };
  return {
    ...(config.name !== undefined ? { name: config.name } : {}),
    base: normalizeBase(config.base, displayPath),
    ...(config.rootPartition !== undefined ? { rootPartition: config.rootPartition } : {}),
    ...(config.cacheSalt !== undefined ? { cacheSalt: config.cacheSalt } : {}),
    testBoot: config.testBoot ?? {},
    ...(Object.keys(envCheck.env).length ? { env: envCheck.env } : {}),
    ...(config.qcow2Compat !== undefined ? { qcow2Compat: config.qcow2Compat } : {}),
  };
}

/**
 * JSON.parse's complaint with where it is, as a line and column with the
 * line shown (JSON.parse gives only an offset, and not always), and the fix.
 */
export function describeJsonError(text: string, parseMessage: string): string {
  const offset = /at position (\d+)/.exec(parseMessage)?.[1];
  const position = offset !== undefined ? Number(offset) : /Unexpected end of JSON input/.test(parseMessage) ? text.length : undefined;
  const fix = 'Fix the JSON there: a comma before a closing brace, or a missing comma, quote or brace, is the usual cause.';
  if (position === undefined) return `${parseMessage}. ${fix.replace(' there', '')}`;
  const lineStart = text.lastIndexOf('\n', position - 1) + 1;
  const line = text.slice(0, position).split('\n').length;
  const column = position - lineStart + 1;
  if (offset === undefined) return `the file ends before the JSON does (line ${line}, column ${column}). ${fix}`;
  const problem = parseMessage.replace(/ in JSON at position \d+.*$/, '');
  if (text.slice(position).trim() === '') return `${problem} at the end of the file (line ${line}, column ${column}). ${fix}`;
  const lineEnd = text.indexOf('\n', position);
  const shown = text.slice(lineStart, lineEnd === -1 ? undefined : lineEnd).replace(/\t/g, ' ');
  return `${problem} at line ${line}, column ${column}:\n    ${shown}\n    ${' '.repeat(column - 1)}^\n${fix}`;
}

/** image.json's `base` as the schema lets it through: exactly one of the kinds' keys. */
type RawBase = { url?: string; sha256?: string; path?: string; empty?: string; image?: string; layer?: string };

// Which kind of base the user wrote, from the one key that names it.
function normalizeBase(base: RawBase, displayPath: string): BaseSpec {
  if (base.image !== undefined) return { kind: 'image', image: base.image, layer: base.layer! };
  if (base.url !== undefined) return { kind: 'url', url: base.url, sha256: base.sha256!.toLowerCase() };
  if (base.path !== undefined) return { kind: 'path', path: base.path };
  const bytes = parseSize(base.empty!);
  if (bytes === undefined) {
    throw new ImageConfigError(`${displayPath}: base.empty '${base.empty}' is not a disk size (use e.g. "4G").`);
  }
  return { kind: 'empty', size: base.empty!, bytes };
}

/** In the order of the schema's `base.oneOf` branches. */
const BASE_KINDS = ['url', 'path', 'image', 'empty'] as const;

const FIELD_HINTS: Record<string, string> = {
  'base.sha256': 'base.sha256 must be 64 hexadecimal digits (the SHA-256 of the file as downloaded)',
  'base.url': 'base.url must start with http://, https:// or file://',
  'base.empty': 'base.empty must be a size such as "4G"',
  'base.image': 'base.image must name another image: letters, digits, ".", "_" and "-", starting with a letter or digit',
  'base.layer': 'base.layer must be a layer folder name of that image, e.g. "20_packages"',
};

/**
 * Turns Ajv's errors into lines a person can act on. `base` is a oneOf of
 * three shapes and Ajv reports every branch's complaint; the shape the user
 * meant is the one whose key (url, path or empty) is present, so only that
 * branch's complaints are shown.
 */
function describeErrors(errors: ErrorObject[], raw: unknown): string {
  const lines = new Set<string>();
  const base = (raw as { base?: unknown }).base;
  const baseKeys = base && typeof base === 'object' && !Array.isArray(base) ? Object.keys(base) : [];
  const kinds = BASE_KINDS.filter((kind) => baseKeys.includes(kind));
  const branch = kinds.length === 1 ? `#/properties/base/oneOf/${BASE_KINDS.indexOf(kinds[0])}/` : undefined;
  for (const error of errors) {
    const field = fieldName(error);
    const inBase = error.schemaPath.startsWith('#/properties/base/');
    if (inBase) {
      if (error.keyword === 'oneOf') {
        if (kinds.length !== 1) {
          lines.add(
            `  - base must have exactly one of url (with sha256), path, empty or image (with layer), e.g. {"empty": "4G"} (found: ${baseKeys.join(', ') || JSON.stringify(base)})`,
          );
        }
        continue;
      }
      if (!branch || !error.schemaPath.startsWith(branch)) continue;
    }
    if (FIELD_HINTS[field]) {
      lines.add(`  - ${FIELD_HINTS[field]}`);
    } else if (error.keyword === 'additionalProperties') {
      const extra = (error.params as { additionalProperty: string }).additionalProperty;
      lines.add(`  - ${field ? `${field}.` : ''}${extra} is not a known field`);
    } else if (error.keyword === 'required') {
      const missing = (error.params as { missingProperty: string }).missingProperty;
      lines.add(`  - ${field ? `${field}.` : ''}${missing} is required${field === 'base' && kinds.length === 1 ? ` with base.${kinds[0]}` : ''}`);
    } else {
      lines.add(`  - ${field || '(top level)'} ${error.message}`);
    }
  }
  return [...lines].join('\n');
}

function fieldName(error: ErrorObject): string {
  return error.instancePath.replace(/^\//, '').replace(/\//g, '.');
}
