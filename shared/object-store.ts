// Result images live in S3-compatible storage. This sits in db/ because db/ is the code the API
// (which presigns URLs) and the worker (which uploads) share.
import { createHash } from 'node:crypto';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Settings } from './env.ts';

export interface PutResult {
  bytes: number;
  sha256: string;
}

export interface ObjectStore {
  readonly bucket: string;
  put(key: string, body: Uint8Array, contentType: string): Promise<PutResult>;
  /** A GET URL valid for `expiresInSeconds`; minted per read, never stored. */
  presignGet(key: string, expiresInSeconds: number): Promise<string>;
  /** Creates the bucket when missing (idempotent). */
  ensureBucket(): Promise<void>;
  /** Throws ObjectStoreError when the bucket cannot be reached. */
  ping(): Promise<void>;
  close(): void;
}

/** Every storage failure leaves here as this, so callers never see SDK internals. */
export class ObjectStoreError extends Error {
  override name = 'ObjectStoreError';
  readonly code = 'storage_unavailable';
}

/** Object keys derive from the generation id and image index: a retried job overwrites, never duplicates. */
export function outputKey(generationId: string, index: number): string {
  return `generations/${generationId}/${index}.jpg`;
}

function normalise(action: string, error: unknown): ObjectStoreError {
  const detail =
    error instanceof S3ServiceException
      ? `${error.name} (HTTP ${error.$metadata.httpStatusCode ?? '?'})`
      : error instanceof Error
        ? error.message
        : String(error);
  return new ObjectStoreError(`object store ${action} failed: ${detail}`, { cause: error });
}

export function createS3ObjectStore(settings: S3Settings): ObjectStore {
  const client = new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    // Checksums only when an operation demands them: S3-compatible servers differ in their support
    // for the SDK's default flexible checksums (and we upload whole buffers, never streams).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  });
  const bucket = settings.bucket;

  return {
    bucket,
    async put(key, body, contentType) {
      const sha256 = createHash('sha256').update(body).digest('hex');
      try {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: body,
            ContentType: contentType,
            ContentLength: body.byteLength,
          }),
        );
      } catch (error) {
        throw normalise(`upload of ${key}`, error);
      }
      return { bytes: body.byteLength, sha256 };
    },
    async presignGet(key, expiresInSeconds) {
      return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), {
        expiresIn: expiresInSeconds,
      });
    },
    async ensureBucket() {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
        return;
      } catch (error) {
        const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
        if (status !== 404) throw normalise(`check of bucket ${bucket}`, error);
      }
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
      } catch (error) {
        const name = error instanceof S3ServiceException ? error.name : '';
        if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
          throw normalise(`creation of bucket ${bucket}`, error);
        }
      }
    },
    async ping() {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        throw normalise(`check of bucket ${bucket}`, error);
      }
    },
    close() {
      client.destroy();
    },
  };
}
