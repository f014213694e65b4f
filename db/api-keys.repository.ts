import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ApiKey, Database } from './types.ts';

type Executor = Kysely<Database>;

const KEY_PREFIX = 'esl_';

/** Keys are 256-bit random tokens, so a plain SHA-256 is a sound way to store them (no salt/KDF needed). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export interface CreatedApiKey {
  apiKey: ApiKey;
  /** The only time the clear key exists outside the client. */
  key: string;
}

export async function createApiKey(
  db: Executor,
  input: { name: string; key?: string },
): Promise<CreatedApiKey> {
  const key = input.key ?? generateApiKey();
  const apiKey = await db
    .insertInto('api_keys')
    .values({ name: input.name, prefix: key.slice(0, 12), key_hash: hashApiKey(key), revoked_at: null })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { apiKey, key };
}

/** Like createApiKey, but a no-op when the key already exists (the local launcher's fixed key). */
export async function ensureApiKey(db: Executor, input: { name: string; key: string }): Promise<ApiKey> {
  await db
    .insertInto('api_keys')
    .values({
      name: input.name,
      prefix: input.key.slice(0, 12),
      key_hash: hashApiKey(input.key),
      revoked_at: null,
    })
    .onConflict((oc) => oc.column('key_hash').doNothing())
    .execute();
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('key_hash', '=', hashApiKey(input.key))
    .executeTakeFirstOrThrow();
}

export async function findActiveApiKey(db: Executor, key: string): Promise<ApiKey | undefined> {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('key_hash', '=', hashApiKey(key))
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
}
