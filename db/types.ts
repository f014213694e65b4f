// Kysely's view of our tables. pg-boss owns its own schema; these are ours.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp the database fills in by default (Generated<> does not unwrap a ColumnType). */
type DefaultTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export const GENERATION_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type GenerationStatus = (typeof GENERATION_STATUSES)[number];
export const TERMINAL_STATUSES: readonly GenerationStatus[] = ['succeeded', 'failed', 'canceled'];

/** One stored image of a generation; the URL is not stored, it is presigned on every read. */
export interface StoredOutput {
  index: number;
  key: string;
  width: number;
  height: number;
  content_type: string;
  bytes: number;
  sha256: string;
}

export interface StageTimingsRecord {
  translate_ms?: number;
  encode_ms?: number;
  denoise_ms?: number;
  decode_ms?: number;
  jpeg_ms?: number;
  upload_ms?: number;
}

export interface ApiKeysTable {
  id: Generated<string>;
  name: string;
  /** First characters of the key, safe to show in listings and logs. */
  prefix: string;
  /** SHA-256 of the whole key; keys are high-entropy random tokens, so a fast hash is enough. */
  key_hash: string;
  created_at: DefaultTimestamp;
  revoked_at: Timestamp | null;
  /** Cap on this key's queued+running generations; null means the server default (MAX_IN_FLIGHT_PER_KEY). */
  max_in_flight: number | null;
}

export interface GenerationsTable {
  id: string;
  api_key_id: string;
  status: ColumnType<GenerationStatus, GenerationStatus | undefined, GenerationStatus>;
  prompt: string;
  negative_prompt: string;
  width: number;
  height: number;
  steps: number;
  guidance_scale: number;
  num_images: number;
  /** The seed actually used (chosen by the API when the request has none). */
  seed: number;
  /** What actually ran (e.g. dpmpp_2m_karras); null until the worker has run it. */
  scheduler: string | null;
  /** The client's choice; null means the model's own scheduler_config.json decides. */
  requested_scheduler: string | null;
  /** Karras sigma spacing requested; null means the model's config decides. */
  requested_karras: boolean | null;
  /** The prompts the text encoder saw: the English translation of a Russian prompt, else the prompt. */
  prompt_en: string | null;
  negative_prompt_en: string | null;
  outputs: ColumnType<StoredOutput[], string | undefined, string>;
  timings: ColumnType<StageTimingsRecord, string | undefined, string>;
  prompt_truncated: Generated<boolean>;
  error_code: string | null;
  error_message: string | null;
  attempts: Generated<number>;
  created_at: DefaultTimestamp;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  updated_at: DefaultTimestamp;
}

/** One Idempotency-Key per API key; reusable once older than 24 h (the entry is then re-pointed). */
export interface IdempotencyKeysTable {
  api_key_id: string;
  key: string;
  /** SHA-256 of the canonical validated request body. */
  request_hash: string;
  generation_id: string;
  created_at: DefaultTimestamp;
}

export interface Database {
  api_keys: ApiKeysTable;
  generations: GenerationsTable;
  idempotency_keys: IdempotencyKeysTable;
}

export type ApiKey = Selectable<ApiKeysTable>;
export type Generation = Selectable<GenerationsTable>;
export type NewGeneration = Insertable<GenerationsTable>;
export type GenerationUpdate = Updateable<GenerationsTable>;
export type IdempotencyKey = Selectable<IdempotencyKeysTable>;
