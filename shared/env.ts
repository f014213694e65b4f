// Configuration is read once per process from the environment, validated with zod, frozen and
// passed down. A bad value stops the process at boot with a message naming the variable.
import { z } from 'zod';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function parseEnv<S extends z.ZodObject>(
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.infer<S>> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const name = issue.path.join('.');
      const value = env[name];
      const shown = value === undefined ? 'unset' : `'${value}'`;
      return `  ${name} (${shown}): ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return Object.freeze(result.data);
}

/** Environment booleans: 1/0, true/false, yes/no. */
export const envBoolean = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no'])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

export const envInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/**
 * Variables every service process reads: where the database and the object store are. Each
 * variable's `.describe()` is its line in the README's table (`npm run env-table`).
 */
export const sharedEnv = {
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// URL' })
    .describe('`postgres://` URL of the database'),
  S3_ENDPOINT: z.url().optional().describe('S3-compatible endpoint, e.g. `http://minio:9000`; unset: AWS S3'),
  S3_REGION: z.string().min(1).default('us-east-1').describe('Region for signing'),
  S3_BUCKET: z
    .string()
    .min(3)
    .default('easel')
    .describe('Bucket for result images (the worker creates it if missing)'),
  S3_ACCESS_KEY_ID: z.string().min(1).default('easel').describe('Storage access key id'),
  S3_SECRET_ACCESS_KEY: z.string().min(1).default('easel-secret').describe('Storage secret key'),
  S3_FORCE_PATH_STYLE: envBoolean
    .default(true)
    .describe('Path-style URLs (MinIO and most S3-compatible servers need them)'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('pino level; logs are JSON lines on stdout'),
};

export interface S3Settings {
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
}

export function s3SettingsFrom(env: {
  S3_ENDPOINT?: string;
  S3_REGION: string;
  S3_BUCKET: string;
  S3_ACCESS_KEY_ID: string;
  S3_SECRET_ACCESS_KEY: string;
  S3_FORCE_PATH_STYLE: boolean;
}): S3Settings {
  return {
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION,
    bucket: env.S3_BUCKET,
    accessKeyId: env.S3_ACCESS_KEY_ID,
    secretAccessKey: env.S3_SECRET_ACCESS_KEY,
    forcePathStyle: env.S3_FORCE_PATH_STYLE,
  };
}
