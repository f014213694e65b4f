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

/**
 * The timed stages of a generation, in the order they run: translate (the worker), encode, denoise
 * and decode (the model), jpeg and upload (the worker). The row's `timings`, the resource's
 * `timings` and the worker's stage histogram all derive from this list.
 */
export const GENERATION_STAGES = ['translate', 'encode', 'denoise', 'decode', 'jpeg', 'upload'] as const;
export type GenerationStage = (typeof GENERATION_STAGES)[number];

/** Milliseconds per stage of the successful attempt: `translate_ms`, `encode_ms`, … (those that ran). */
export type StageTimingsRecord = { [S in GenerationStage as `${S}_ms`]?: number };

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
  /** Signs webhooks: `whsec_<base64 of 32 random bytes>`; the database fills it in on insert. */
  webhook_secret: ColumnType<string, string | undefined, string>;
  /** The secret before the last rotation, still signing until the expiry below. */
  webhook_secret_previous: ColumnType<string | null, string | null | undefined, string | null>;
  webhook_secret_previous_expires_at: ColumnType<
    Date | null,
    Date | string | null | undefined,
    Date | string | null
  >;
  /** Operator key: may read fleet-wide views such as GET /v1/workers. */
  admin: ColumnType<boolean, boolean | undefined, boolean>;
  /** Share of the turns on a contended model queue (1-100; 2 gets about twice the turns of 1). */
  weight: ColumnType<number, number | undefined, number>;
  /** Daily (UTC) limits checked at create; null is unlimited. */
  images_per_day: ColumnType<number | null, number | null | undefined, number | null>;
  accelerator_seconds_per_day: ColumnType<number | null, number | null | undefined, number | null>;
}

/** Per model queue and key: the virtual finish time of the key's latest job (db/fair-queue.ts). */
export interface FairShareTable {
  queue: string;
  api_key_id: string;
  /** bigint (parsed as a number, db/connect.ts). */
  last_finish: number;
  updated_at: DefaultTimestamp;
}

export const USAGE_OUTCOMES = ['succeeded', 'failed', 'canceled', 'retry'] as const;
export type UsageOutcome = (typeof USAGE_OUTCOMES)[number];

/** The usage ledger: one row per attempt that ran on the accelerator (migration 0010). */
export interface UsageRecordsTable {
  id: Generated<string>;
  generation_id: string;
  /** The generation's attempt number (generations.attempts when the attempt was claimed). */
  attempt: number;
  api_key_id: string;
  model: string | null;
  outcome: UsageOutcome;
  recorded_at: DefaultTimestamp;
  /** The worker's measured busy interval for the attempt, in microseconds. */
  accelerator_us: number;
  /** Images stored (succeeded attempts only). */
  images: number;
  /** width × height × denoising steps done × images in the batch. */
  pixel_steps: number;
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
  /** Whether the worker translated the prompts to English (null until it has taken the generation). */
  translated: ColumnType<boolean | null, boolean | null | undefined, boolean | null>;
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
  /** A client asked to cancel while it ran; the worker ends it as canceled at its next step. */
  cancel_requested_at: Timestamp | null;
  /** The running (or last) attempt's last persisted denoising step, 1-based; null before the first. */
  progress_step: number | null;
  progress_total: number | null;
  /** Moving average of the attempt's measured step time, for the ETA. */
  step_ms: number | null;
  /** WORKER_ID of the worker that ran the last attempt. */
  worker_id: string | null;
  /**
   * The model (models.id) the generation runs on; its job is in that model's queue. Null only for
   * generations created before models existed (they run on the default model).
   */
  model: ColumnType<string | null, string | null | undefined, string | null>;
  /** Its start in its model queue's fair order (db/fair-queue.ts; the job's priority is −fair_start). */
  fair_start: ColumnType<number | null, number | null | undefined, number | null>;
  /** Where status changes are POSTed (Standard Webhooks); null: no webhooks. */
  webhook_url: ColumnType<string | null, string | null | undefined, string | null>;
  /** The event types to send; null when there is no webhook_url. */
  webhook_events: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
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

export const WEBHOOK_EVENT_TYPES = [
  'generation.started',
  'generation.completed',
  'generation.failed',
  'generation.canceled',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
export const WEBHOOK_EVENT_STATUSES = ['pending', 'delivered', 'failed', 'disabled'] as const;
export type WebhookEventStatus = (typeof WEBHOOK_EVENT_STATUSES)[number];
/** What became of one delivery attempt; `skipped_disabled`: nothing sent, the URL is disabled (410). */
export const WEBHOOK_DELIVERY_OUTCOMES = [
  'delivered',
  'retry',
  'exhausted',
  'gone',
  'rejected',
  'forbidden',
  'skipped_disabled',
] as const;
export type WebhookDeliveryOutcome = (typeof WEBHOOK_DELIVERY_OUTCOMES)[number];

/** One status change to tell a generation's webhook about; the id is the stable `webhook-id`. */
export interface WebhookEventsTable {
  id: string;
  generation_id: string;
  api_key_id: string;
  type: WebhookEventType;
  url: string;
  /** The generations row at the status change (JSON; dates as ISO strings). */
  snapshot: ColumnType<Record<string, unknown>, string, string>;
  status: ColumnType<WebhookEventStatus, WebhookEventStatus | undefined, WebhookEventStatus>;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Timestamp | null;
  created_at: DefaultTimestamp;
  delivered_at: Timestamp | null;
}

/** One attempt to deliver a webhook event. */
export interface WebhookDeliveriesTable {
  id: Generated<string>;
  event_id: string;
  url: string;
  attempt: number;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
  /** The first 4 KiB of the response body. */
  response_body: string | null;
  /** When the next attempt is due; null when none follows. */
  next_attempt_at: Timestamp | null;
  outcome: WebhookDeliveryOutcome;
  created_at: DefaultTimestamp;
}

/** A URL a key's receiver retired with 410 Gone: nothing is sent to it until the row is deleted. */
export interface WebhookDisabledUrlsTable {
  id: Generated<string>;
  api_key_id: string;
  url: string;
  /** The event whose attempt got the 410; null once that event is gone. */
  event_id: string | null;
  disabled_at: DefaultTimestamp;
}

/**
 * What a model can be asked for. Its family sets the ranges; a model folder's easel-model.json
 * (or an operator's registration) may narrow them and set other defaults. The API validates every
 * request against these before queueing.
 */
export interface ModelCapabilities {
  /** Samplers a request may choose (the `scheduler` field). */
  samplers: string[];
  /** Those of them that accept `karras: true`. */
  karras_samplers: string[];
  /** What runs without `scheduler`, named as the resource's `scheduler` names it (e.g. `euler_a`). */
  default_sampler: string;
  width: { min: number; max: number; multiple_of: number; default: number };
  height: { min: number; max: number; multiple_of: number; default: number };
  steps: { min: number; max: number; default: number };
  guidance_scale: { min: number; max: number; default: number };
  /** Whether the pipeline uses `negative_prompt` (a model without classifier-free guidance does not). */
  negative_prompt: boolean;
  /** Prompt languages the text encoder reads natively (ISO 639-1); others are translated to English first. */
  languages: string[];
  /** The most images one request may ask for (`num_images`). */
  max_images: number;
}

/** A model the fleet serves (or served): announced by its workers, or registered by an operator. */
export interface ModelsTable {
  /** Lowercase letters, digits, '.', '_' and '-' (MODEL_ID_PATTERN); part of its queue's name. */
  id: string;
  /** The family's short name, e.g. `stable-diffusion`. */
  family: string;
  capabilities: ColumnType<ModelCapabilities, string, string>;
  /** SHA-256 over the model folder's files as its last worker announced them; null if none has. */
  content_hash: string | null;
  created_at: DefaultTimestamp;
  updated_at: DefaultTimestamp;
  /** When a worker holding it last started. */
  announced_at: Timestamp | null;
  /** Retired models take no new generations (422 model_not_found); queued ones still run. */
  retired_at: Timestamp | null;
}

/** One worker process, as its last heartbeat left it. */
export interface WorkersTable {
  id: string;
  hostname: string;
  pid: number;
  provider: string;
  model: ColumnType<Record<string, unknown>, string, string>;
  /** models.id of the model it holds warm (null for workers from before models existed). */
  model_id: ColumnType<string | null, string | null | undefined, string | null>;
  translator: ColumnType<Record<string, unknown> | null, string | null, string | null>;
  current_generation_id: string | null;
  jobs_succeeded: ColumnType<number, number | undefined, number>;
  jobs_failed: ColumnType<number, number | undefined, number>;
  started_at: DefaultTimestamp;
  last_heartbeat_at: DefaultTimestamp;
  stopped_at: Timestamp | null;
}

export interface Database {
  api_keys: ApiKeysTable;
  generations: GenerationsTable;
  idempotency_keys: IdempotencyKeysTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_disabled_urls: WebhookDisabledUrlsTable;
  workers: WorkersTable;
  models: ModelsTable;
  fair_share: FairShareTable;
  usage_records: UsageRecordsTable;
}

export type ApiKey = Selectable<ApiKeysTable>;
export type Generation = Selectable<GenerationsTable>;
export type NewGeneration = Insertable<GenerationsTable>;
export type GenerationUpdate = Updateable<GenerationsTable>;
export type IdempotencyKey = Selectable<IdempotencyKeysTable>;
export type WebhookEvent = Selectable<WebhookEventsTable>;
export type WebhookDelivery = Selectable<WebhookDeliveriesTable>;
export type WebhookDisabledUrl = Selectable<WebhookDisabledUrlsTable>;
export type Worker = Selectable<WorkersTable>;
export type Model = Selectable<ModelsTable>;
export type UsageRecord = Selectable<UsageRecordsTable>;
export type NewUsageRecord = Insertable<UsageRecordsTable>;
