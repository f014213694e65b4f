import { type Kysely, sql } from 'kysely';
import type { Database, IdempotencyKey } from './types.ts';

type Executor = Kysely<Database>;

/** How long a key keeps answering with its generation; older keys may be reused. */
export const IDEMPOTENCY_WINDOW_HOURS = 24;

export type IdempotencyClaim =
  | { claimed: true }
  | { claimed: false; existing: Pick<IdempotencyKey, 'generation_id' | 'request_hash' | 'created_at'> };

/**
 * Claims (api key, Idempotency-Key) for a generation about to be inserted in the same
 * transaction. The primary key serialises concurrent duplicates: a second claimer blocks on the
 * first one's uncommitted entry and, once that commits, gets `claimed: false` with the winner
 * (or claims the key itself if the first rolled back). An entry past the window is taken over.
 */
export async function claimIdempotencyKey(
  trx: Executor,
  claim: { apiKeyId: string; key: string; requestHash: string; generationId: string },
): Promise<IdempotencyClaim> {
  // The winner can vanish between our conflict and our read only if its generation was
  // deleted in that instant; one more round then claims the key.
  for (let attempt = 0; attempt < 3; attempt++) {
    const inserted = await trx
      .insertInto('idempotency_keys')
      .values({
        api_key_id: claim.apiKeyId,
        key: claim.key,
        request_hash: claim.requestHash,
        generation_id: claim.generationId,
        created_at: sql`now()`,
      })
      .onConflict((oc) =>
        oc
          .columns(['api_key_id', 'key'])
          .doUpdateSet({
            request_hash: (eb) => eb.ref('excluded.request_hash'),
            generation_id: (eb) => eb.ref('excluded.generation_id'),
            created_at: (eb) => eb.ref('excluded.created_at'),
          })
          .where(
            'idempotency_keys.created_at',
            '<',
            sql<Date>`now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})`,
          ),
      )
      .returning('generation_id')
      .executeTakeFirst();
    if (inserted) return { claimed: true };

    const existing = await trx
      .selectFrom('idempotency_keys')
      .select(['generation_id', 'request_hash', 'created_at'])
      .where('api_key_id', '=', claim.apiKeyId)
      .where('key', '=', claim.key)
      .executeTakeFirst();
    if (existing) return { claimed: false, existing };
  }
  throw new Error('idempotency key could neither be claimed nor read');
}

/**
 * Gives back claims whose generation was refused (admission) in the transaction that claimed
 * them, so the key stays unused, as if the request had never been made.
 */
export async function releaseIdempotencyKeys(
  trx: Executor,
  claims: readonly { apiKeyId: string; key: string; generationId: string }[],
): Promise<void> {
  if (claims.length === 0) return;
  await trx
    .deleteFrom('idempotency_keys')
    .where((eb) =>
      eb.or(
        claims.map((c) =>
          eb.and([
            eb('api_key_id', '=', c.apiKeyId),
            eb('key', '=', c.key),
            eb('generation_id', '=', c.generationId),
          ]),
        ),
      ),
    )
    .execute();
}
