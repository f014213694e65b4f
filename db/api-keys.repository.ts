import { createHash, randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
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
  /** Signs this key's webhooks (`whsec_...`); also readable later at GET /v1/webhooks/secret. */
  webhookSecret: string;
}

/** How many characters of a key are stored in clear (`esl_` and 8 random ones) to name it. */
export const PREFIX_LENGTH = 12;

export async function createApiKey(
  db: Executor,
  input: {
    name: string;
    key?: string;
    maxInFlight?: number | null;
    admin?: boolean;
    weight?: number;
    imagesPerDay?: number | null;
    acceleratorSecondsPerDay?: number | null;
  },
): Promise<CreatedApiKey> {
  const key = input.key ?? generateApiKey();
  const apiKey = await db
    .insertInto('api_keys')
    .values({
      name: input.name,
      prefix: key.slice(0, PREFIX_LENGTH),
      key_hash: hashApiKey(key),
      revoked_at: null,
      max_in_flight: input.maxInFlight ?? null,
      admin: input.admin ?? false,
      weight: input.weight ?? 1,
      images_per_day: input.imagesPerDay ?? null,
      accelerator_seconds_per_day: input.acceleratorSecondsPerDay ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { apiKey, key, webhookSecret: apiKey.webhook_secret };
}

/** Like createApiKey, but a no-op when the key already exists (the local launcher's fixed key). */
export async function ensureApiKey(db: Executor, input: { name: string; key: string }): Promise<ApiKey> {
  await db
    .insertInto('api_keys')
    .values({
      name: input.name,
      prefix: input.key.slice(0, PREFIX_LENGTH),
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

/** The active (unrevoked) keys among these, in one round trip; the map is keyed by the clear key. */
export async function findActiveApiKeys(db: Executor, keys: readonly string[]): Promise<Map<string, ApiKey>> {
  const byHash = new Map(keys.map((key) => [hashApiKey(key), key]));
  if (byHash.size === 0) return new Map();
  const rows = await db
    .selectFrom('api_keys')
    .selectAll()
    .where('key_hash', 'in', [...byHash.keys()])
    .where('revoked_at', 'is', null)
    .execute();
  return new Map(rows.map((row) => [byHash.get(row.key_hash) as string, row]));
}

/** What may be shown about a key: never its hash or its webhook secrets. */
export type ApiKeySummary = Pick<
  ApiKey,
  | 'id'
  | 'name'
  | 'prefix'
  | 'created_at'
  | 'revoked_at'
  | 'max_in_flight'
  | 'admin'
  | 'weight'
  | 'images_per_day'
  | 'accelerator_seconds_per_day'
>;

const SUMMARY_COLUMNS = [
  'id',
  'name',
  'prefix',
  'created_at',
  'revoked_at',
  'max_in_flight',
  'admin',
  'weight',
  'images_per_day',
  'accelerator_seconds_per_day',
] as const;

/** Weights are whole numbers in this range (a check in migration 0010). */
export const MAX_WEIGHT = 100;

/** Oldest first, revoked keys included (they still own their generations). */
export async function listApiKeys(db: Executor): Promise<ApiKeySummary[]> {
  return db.selectFrom('api_keys').select(SUMMARY_COLUMNS).orderBy('created_at').orderBy('id').execute();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The keys an operator's reference names: an id, a listed prefix, or the whole key. A prefix
 * can in principle match several keys; the caller decides what to do then.
 */
export async function findApiKeysByReference(db: Executor, reference: string): Promise<ApiKeySummary[]> {
  const ref = reference.trim();
  let query = db.selectFrom('api_keys').select(SUMMARY_COLUMNS);
  if (UUID.test(ref)) query = query.where('id', '=', ref.toLowerCase());
  else if (ref.length > PREFIX_LENGTH) query = query.where('key_hash', '=', hashApiKey(ref));
  else query = query.where('prefix', '=', ref);
  return query.orderBy('created_at').execute();
}

/**
 * Revokes at once: the API looks the key up on every request, so the next one gets 401.
 * Revoking a revoked key keeps the first revocation time. Undefined when there is no such key.
 */
export async function revokeApiKey(
  db: Executor,
  id: string,
): Promise<{ apiKey: ApiKeySummary; alreadyRevoked: boolean } | undefined> {
  const revoked = await db
    .updateTable('api_keys')
    .set({ revoked_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .returning(SUMMARY_COLUMNS)
    .executeTakeFirst();
  if (revoked) return { apiKey: revoked, alreadyRevoked: false };
  const existing = await db
    .selectFrom('api_keys')
    .select(SUMMARY_COLUMNS)
    .where('id', '=', id)
    .executeTakeFirst();
  return existing && { apiKey: existing, alreadyRevoked: true };
}

export interface ApiKeyChanges {
  name?: string;
  /** Cap on queued+running generations; null: the server default, MAX_IN_FLIGHT_PER_KEY. */
  maxInFlight?: number | null;
  /** Share of the turns on a contended model queue (1..MAX_WEIGHT). */
  weight?: number;
  /** Daily (UTC) quotas; null removes the limit. */
  imagesPerDay?: number | null;
  acceleratorSecondsPerDay?: number | null;
}

/**
 * Changes a key's name, cap, weight or quotas. Takes effect on the key's next create (a new weight
 * orders its next jobs; jobs already queued keep their places). Undefined when there is no such key.
 */
export async function updateApiKey(
  db: Executor,
  id: string,
  changes: ApiKeyChanges,
): Promise<ApiKeySummary | undefined> {
  const set = {
    ...(changes.name === undefined ? {} : { name: changes.name }),
    ...(changes.maxInFlight === undefined ? {} : { max_in_flight: changes.maxInFlight }),
    ...(changes.weight === undefined ? {} : { weight: changes.weight }),
    ...(changes.imagesPerDay === undefined ? {} : { images_per_day: changes.imagesPerDay }),
    ...(changes.acceleratorSecondsPerDay === undefined
      ? {}
      : { accelerator_seconds_per_day: changes.acceleratorSecondsPerDay }),
  };
  if (Object.keys(set).length === 0) {
    return db.selectFrom('api_keys').select(SUMMARY_COLUMNS).where('id', '=', id).executeTakeFirst();
  }
  return db
    .updateTable('api_keys')
    .set(set)
    .where('id', '=', id)
    .returning(SUMMARY_COLUMNS)
    .executeTakeFirst();
}
