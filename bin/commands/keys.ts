// `easel keys`: API keys, straight in the database (DATABASE_URL), for the operator of a server.
// The clear key exists once, in the output of `create`; the database keeps only its hash.

import { type ApiKeySummary, MAX_WEIGHT } from '../../db/api-keys.repository.ts';
import type { Db } from '../../db/connect.ts';
import { CliError, intFlag, parseFlags, UsageError } from './cli.ts';
import { databaseUrl, withDatabase } from './database.ts';

export const keysUsage = `usage:
  easel keys create --name NAME [--max-in-flight N] [--admin] [TENANT FLAGS] [--json]
  easel keys list [--json]
  easel keys revoke ID_OR_PREFIX [--json]
  easel keys set ID_OR_PREFIX [--name NAME] [--max-in-flight N|default] [TENANT FLAGS] [--json]
  easel keys rotate-webhook-secret ID_OR_PREFIX [--overlap SECONDS] [--json]
  easel keys disabled-webhook-urls ID_OR_PREFIX [--json]
  easel keys enable-webhook-url ID_OR_PREFIX URL [--json]

Every command takes --database-url URL (default: DATABASE_URL).

create   makes a key and prints it once, alone on stdout (details go to stderr); the server
         stores only its SHA-256, so a lost key cannot be recovered: revoke it and create another.
         --max-in-flight N caps the key's queued+running generations (default: the server's
         MAX_IN_FLIGHT_PER_KEY). --admin makes an operator key: it may also read fleet-wide
         views (GET /v1/workers); it still sees only its own generations. --json prints id, name,
         prefix, key, created_at, max_in_flight, admin.
list     id, name, prefix, creation and revocation times, cap and admin flag of every key (never
         the key).
revoke   the key is refused (401) from its next request on. ID_OR_PREFIX is the id, the prefix
         \`list\` shows (esl_ and 8 characters) or the whole key.
set      renames a key or changes its cap (default: back to the server's), weight or quotas;
         effective from the key's next create.

TENANT FLAGS (fair turns and daily quotas, see README "Usage and quotas"):
  --weight N               the key's share of the turns on a busy model queue, 1-100 (default 1):
                           a key with weight 2 gets about twice the turns of a key with weight 1
  --images-per-day N|none  images the key may create per UTC day (queued, running or succeeded
                           ones count; failed and canceled ones give theirs back)
  --accelerator-seconds-per-day N|none
                           accelerator time the key's generations may use per UTC day; once used
                           up, creates get 429 quota_exceeded until 00:00 UTC
disabled-webhook-urls
         the webhook URLs the key's receivers retired with 410 Gone: nothing is sent to them.
enable-webhook-url
         sends the key's events to URL again (as GET/DELETE /v1/webhooks/disabled-urls do).
`;

const MAX_IN_FLIGHT_LIMIT = 1_000_000;
const MAX_QUOTA = 2_000_000_000;
const commonFlags = {
  'database-url': { type: 'string' },
  json: { type: 'boolean' },
} as const;
const tenantFlags = {
  weight: { type: 'string' },
  'images-per-day': { type: 'string' },
  'accelerator-seconds-per-day': { type: 'string' },
} as const;

/** A quota flag: a whole number, or `none` to lift the limit. */
function quotaFlag(value: string | undefined, flag: string): number | null | undefined {
  if (value === 'none') return null;
  return value === undefined ? undefined : intFlag(value, flag, 0, 0, MAX_QUOTA);
}

function tenantChanges(values: {
  weight?: string;
  'images-per-day'?: string;
  'accelerator-seconds-per-day'?: string;
}) {
  return {
    weight: values.weight === undefined ? undefined : intFlag(values.weight, '--weight', 1, 1, MAX_WEIGHT),
    imagesPerDay: quotaFlag(values['images-per-day'], '--images-per-day'),
    acceleratorSecondsPerDay: quotaFlag(
      values['accelerator-seconds-per-day'],
      '--accelerator-seconds-per-day',
    ),
  };
}

function quotaText(limit: number | null): string {
  return limit === null ? 'unlimited' : String(limit);
}

export async function keysCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create':
      return create(rest);
    case 'list':
      return list(rest);
    case 'revoke':
      return revoke(rest);
    case 'set':
      return set(rest);
    case 'rotate-webhook-secret':
      return rotateSecret(rest);
    case 'disabled-webhook-urls':
      return disabledWebhookUrls(rest);
    case 'enable-webhook-url':
      return enableWebhookUrl(rest);
    case undefined:
      throw new UsageError(
        'expected create, list, revoke, set, rotate-webhook-secret, disabled-webhook-urls or enable-webhook-url',
      );
    default:
      throw new UsageError(`unknown keys command '${sub}'`);
  }
}

function maxInFlightFlag(value: string | undefined): number | null | undefined {
  if (value === 'default') return null;
  return value === undefined ? undefined : intFlag(value, '--max-in-flight', 0, 1, MAX_IN_FLIGHT_LIMIT);
}

function nameFlag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const name = value.trim();
  if (name === '') throw new UsageError('--name must not be empty');
  return name;
}

function toJson(key: ApiKeySummary) {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    created_at: key.created_at.toISOString(),
    revoked_at: key.revoked_at?.toISOString() ?? null,
    max_in_flight: key.max_in_flight,
    admin: key.admin,
    weight: key.weight,
    images_per_day: key.images_per_day,
    accelerator_seconds_per_day: key.accelerator_seconds_per_day,
  };
}

function describeKey(key: ApiKeySummary): string {
  return `'${key.name}' (id ${key.id}, prefix ${key.prefix})`;
}

function limitsText(key: ApiKeySummary): string {
  return (
    `max in flight: ${capText(key.max_in_flight)}, weight: ${key.weight}, ` +
    `images per day: ${quotaText(key.images_per_day)}, ` +
    `accelerator seconds per day: ${quotaText(key.accelerator_seconds_per_day)}`
  );
}

function capText(maxInFlight: number | null): string {
  return maxInFlight === null ? 'server default' : String(maxInFlight);
}

function time(date: Date | null): string {
  return date ? date.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

async function create(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    {
      ...commonFlags,
      name: { type: 'string' },
      'max-in-flight': { type: 'string' },
      admin: { type: 'boolean' },
      ...tenantFlags,
    },
    true,
  );
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const name = nameFlag(values.name);
  if (name === undefined) throw new UsageError('--name is required');
  const maxInFlight = maxInFlightFlag(values['max-in-flight']);
  const tenant = tenantChanges(values);
  const url = databaseUrl(values['database-url']);
  const { createApiKey } = await import('../../db/api-keys.repository.ts');
  const { apiKey, key, webhookSecret } = await withDatabase(url, 'easel-keys', (db) =>
    createApiKey(db, { name, maxInFlight, admin: values.admin === true, ...tenant }),
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...toJson(apiKey), key, webhook_secret: webhookSecret })}\n`);
    return;
  }
  process.stderr.write(
    `created ${apiKey.admin ? 'admin ' : ''}API key ${describeKey(apiKey)}, ${limitsText(apiKey)}\n` +
      `webhook signing secret (also at GET /v1/webhooks/secret): ${webhookSecret}\n` +
      'the key is shown this once and cannot be recovered; store it now:\n',
  );
  process.stdout.write(`${key}\n`);
}

async function list(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, commonFlags, true);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const url = databaseUrl(values['database-url']);
  const { listApiKeys } = await import('../../db/api-keys.repository.ts');
  const keys = await withDatabase(url, 'easel-keys', listApiKeys);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(keys.map(toJson))}\n`);
    return;
  }
  if (keys.length === 0) {
    process.stderr.write('no API keys yet; `easel keys create --name NAME` makes one\n');
    return;
  }
  const rows = [
    [
      'ID',
      'NAME',
      'PREFIX',
      'CREATED',
      'REVOKED',
      'MAX IN FLIGHT',
      'ADMIN',
      'WEIGHT',
      'IMAGES/DAY',
      'ACCEL S/DAY',
    ],
    ...keys.map((k) => [
      k.id,
      k.name,
      k.prefix,
      time(k.created_at),
      time(k.revoked_at),
      capText(k.max_in_flight),
      k.admin ? 'yes' : 'no',
      String(k.weight),
      quotaText(k.images_per_day),
      quotaText(k.accelerator_seconds_per_day),
    ]),
  ];
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  for (const row of rows) {
    process.stdout.write(
      `${row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd()}\n`,
    );
  }
}

/** The one key a reference names; several (a shared prefix) or none is an error naming them. */
async function resolveKey(db: Db, reference: string): Promise<ApiKeySummary> {
  const { findApiKeysByReference } = await import('../../db/api-keys.repository.ts');
  const found = await findApiKeysByReference(db, reference);
  const [first] = found;
  if (!first) throw new CliError(`no API key with id, prefix or key '${reference}'`);
  if (found.length > 1) {
    throw new CliError(
      `prefix '${reference}' matches ${found.length} keys (ids ${found.map((k) => k.id).join(', ')}); give the id`,
    );
  }
  return first;
}

function oneReference(positionals: string[]): string {
  if (positionals.length !== 1 || positionals[0]?.trim() === '')
    throw new UsageError('expected one ID_OR_PREFIX');
  return positionals[0] as string;
}

async function revoke(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, commonFlags, true);
  const reference = oneReference(positionals);
  const url = databaseUrl(values['database-url']);
  const { revokeApiKey } = await import('../../db/api-keys.repository.ts');
  const result = await withDatabase(url, 'easel-keys', async (db) => {
    const key = await resolveKey(db, reference);
    const revoked = await revokeApiKey(db, key.id);
    if (!revoked) throw new CliError(`API key ${describeKey(key)} disappeared while revoking it`);
    return revoked;
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(toJson(result.apiKey))}\n`);
    return;
  }
  process.stdout.write(
    result.alreadyRevoked
      ? `API key ${describeKey(result.apiKey)} was already revoked at ${time(result.apiKey.revoked_at)}\n`
      : `revoked API key ${describeKey(result.apiKey)}; the API refuses it from now on\n`,
  );
}

async function set(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    { ...commonFlags, name: { type: 'string' }, 'max-in-flight': { type: 'string' }, ...tenantFlags },
    true,
  );
  const reference = oneReference(positionals);
  const name = nameFlag(values.name);
  const maxInFlight = maxInFlightFlag(values['max-in-flight']);
  const tenant = tenantChanges(values);
  if (
    name === undefined &&
    maxInFlight === undefined &&
    Object.values(tenant).every((v) => v === undefined)
  ) {
    throw new UsageError(
      'nothing to change: give --name, --max-in-flight, --weight, --images-per-day or --accelerator-seconds-per-day',
    );
  }
  const url = databaseUrl(values['database-url']);
  const { updateApiKey } = await import('../../db/api-keys.repository.ts');
  const updated = await withDatabase(url, 'easel-keys', async (db) => {
    const key = await resolveKey(db, reference);
    const row = await updateApiKey(db, key.id, { name, maxInFlight, ...tenant });
    if (!row) throw new CliError(`API key ${describeKey(key)} disappeared while changing it`);
    return row;
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(toJson(updated))}\n`);
    return;
  }
  process.stdout.write(`API key ${describeKey(updated)}: ${limitsText(updated)}\n`);
}

/** A new webhook secret; the old one keeps signing (both signatures sent) for the overlap. */
async function rotateSecret(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, { ...commonFlags, overlap: { type: 'string' } }, true);
  const reference = oneReference(positionals);
  const overlap = values.overlap === undefined ? 86_400 : Number(values.overlap);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap > 30 * 86_400) {
    throw new UsageError('--overlap must be whole seconds from 0 to 2592000');
  }
  const url = databaseUrl(values['database-url']);
  const { rotateWebhookSecret } = await import('../../db/webhooks.repository.ts');
  const { key, secret } = await withDatabase(url, 'easel-keys', async (db) => {
    const key = await resolveKey(db, reference);
    return { key, secret: await rotateWebhookSecret(db, key.id, overlap) };
  });
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ id: key.id, webhook_secret: secret, overlap_seconds: overlap })}\n`,
    );
    return;
  }
  process.stderr.write(
    `rotated the webhook secret of API key ${describeKey(key)}; the previous one stays valid for ${overlap} s\n`,
  );
  process.stdout.write(`${secret}\n`);
}

/** The URLs the key's receivers answered 410 Gone from: one per line, or JSON. */
async function disabledWebhookUrls(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, commonFlags, true);
  const reference = oneReference(positionals);
  const url = databaseUrl(values['database-url']);
  const { listDisabledWebhookUrls } = await import('../../db/webhooks.repository.ts');
  const { key, rows } = await withDatabase(url, 'easel-keys', async (db) => {
    const key = await resolveKey(db, reference);
    return { key, rows: await listDisabledWebhookUrls(db, key.id) };
  });
  if (values.json) {
    const data = rows.map((r) => ({
      id: r.id,
      url: r.url,
      disabled_at: r.disabled_at.toISOString(),
      webhook_id: r.event_id,
    }));
    process.stdout.write(`${JSON.stringify(data)}\n`);
    return;
  }
  if (rows.length === 0) {
    process.stderr.write(`API key ${describeKey(key)} has no disabled webhook URLs\n`);
    return;
  }
  for (const r of rows) process.stdout.write(`${time(r.disabled_at)}  ${r.url}\n`);
}

async function enableWebhookUrl(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, commonFlags, true);
  const [reference, target, ...extra] = positionals;
  if (!reference || !target || extra.length > 0) throw new UsageError('expected ID_OR_PREFIX and URL');
  const url = databaseUrl(values['database-url']);
  const repository = await import('../../db/webhooks.repository.ts');
  const { key, enabled } = await withDatabase(url, 'easel-keys', async (db) => {
    const key = await resolveKey(db, reference);
    return { key, enabled: await repository.enableWebhookUrl(db, key.id, { url: target }) };
  });
  if (!enabled) throw new CliError(`webhook URL ${target} is not disabled for API key ${describeKey(key)}`);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ id: enabled.id, url: enabled.url, enabled: true })}\n`);
    return;
  }
  process.stdout.write(
    `re-enabled ${enabled.url} for API key ${describeKey(key)} (disabled since ${time(enabled.disabled_at)}); ` +
      'events written from now on are sent to it\n',
  );
}
