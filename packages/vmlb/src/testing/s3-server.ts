import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

/** An S3-protocol server (s3rver) on loopback with one bucket, for tests that run vmlb against `s3://`. */
export interface S3TestServer {
  bucket: string;
  /** AWS_* variables that point the AWS SDK (in vmlb's executors) at the server. */
  env: Record<string, string>;
  /** An SDK client of its own, to look at and damage objects behind vmlb's back. */
  client: S3Client;
  listKeys(prefix: string): Promise<string[]>;
  /** Replaces an object's bytes with the same bytes, one of them flipped. */
  corrupt(key: string): Promise<void>;
  remove(key: string): Promise<void>;
  close(): Promise<void>;
}

export async function startS3TestServer(): Promise<S3TestServer> {
  // As in vmlb's own S3 client: the SDK is pinned to versions that run on Node 20.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const directory = mkdtempSync(path.join(tmpdir(), 'vmlb-s3rver-'));
  const bucket = 'vmlb-blobs';
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  const { port } = (await server.run()) as AddressInfo;
  const env = {
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
  const client = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3,
    forcePathStyle: true,
    region: env.AWS_REGION,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    bucket,
    env,
    client,
    async listKeys(prefix) {
      const listing = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (listing.Contents ?? []).map((object) => object.Key!).sort();
    },
    async corrupt(key) {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = Buffer.from(await object.Body!.transformToByteArray());
      bytes[bytes.length >> 1] ^= 0xff;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, Metadata: object.Metadata }));
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    async close() {
      client.destroy();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
