import type { Kysely } from 'kysely';

// prompt_en: what the text encoder saw (the translation of a Russian prompt, else the prompt).
// requested_scheduler: the client's choice; `scheduler` keeps recording what actually ran.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('generations')
    .addColumn('prompt_en', 'text')
    .addColumn('negative_prompt_en', 'text')
    .addColumn('requested_scheduler', 'text')
    .addColumn('requested_karras', 'boolean')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('generations')
    .dropColumn('prompt_en')
    .dropColumn('negative_prompt_en')
    .dropColumn('requested_scheduler')
    .dropColumn('requested_karras')
    .execute();
}
