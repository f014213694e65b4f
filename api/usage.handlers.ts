import type { RouteHandler } from '@hono/zod-openapi';
import type { Db } from '../db/connect.ts';
import { type UsageCounters, usageSummary } from '../db/usage.repository.ts';
import type { AppEnv } from './context.ts';
import { apiError, type FieldError } from './errors.ts';
import type { getUsageRoute } from './usage.routes.ts';
import { DEFAULT_USAGE_DAYS, MAX_USAGE_RANGE_DAYS, type UsageResource } from './usage.schemas.ts';

export interface UsageDeps {
  db: Db;
}

const DAY_MS = 86_400_000;

/** A validated `from`/`to`: a date is 00:00 UTC that day (Date parses date-only forms as UTC). */
const instant = (value: string) => new Date(value);

const startOfUtcDay = (ms: number) => Math.floor(ms / DAY_MS) * DAY_MS;

/**
 * The range a query asks for, defaults filled in: `to` is now; `from` starts the 30 UTC days whose
 * last is the day `to` falls in (the day of the instant just before it: `to` is exclusive, so
 * `to=2026-12-01` makes November the last 30 days). Checked here, not in the query schema, because
 * the defaults depend on the clock.
 */
export function usageRange(
  query: { from?: string; to?: string },
  now = new Date(),
): { from: Date; to: Date } {
  const to = query.to === undefined ? now : instant(query.to);
  const from =
    query.from === undefined
      ? new Date(startOfUtcDay(to.getTime() - 1) - (DEFAULT_USAGE_DAYS - 1) * DAY_MS)
      : instant(query.from);
  const invalid = (error: FieldError) =>
    apiError('validation_failed', 'The request query has 1 invalid field.', { errors: [error] });
  if (from.getTime() >= to.getTime()) throw invalid({ field: 'from', message: 'must be before to' });
  if (to.getTime() - from.getTime() > MAX_USAGE_RANGE_DAYS * DAY_MS) {
    throw invalid({ field: 'to', message: `must be at most ${MAX_USAGE_RANGE_DAYS} days after from` });
  }
  return { from, to };
}

/** Microseconds in the ledger, milliseconds (µs precision) in the resource. */
function countersOf(counters: UsageCounters) {
  return {
    attempts: counters.attempts,
    generations: counters.generations,
    images: counters.images,
    pixel_steps: counters.pixelSteps,
    accelerator_ms: counters.acceleratorUs / 1000,
  };
}

export function getUsageHandler(deps: UsageDeps): RouteHandler<typeof getUsageRoute, AppEnv> {
  return async (c) => {
    const query = c.req.valid('query');
    const caller = c.get('apiKey');
    // Like GET /v1/workers: naming a key at all is an operator's view, whoever the key is.
    if (query.api_key_id !== undefined && !caller.admin) {
      throw apiError('forbidden', 'Only an admin API key may choose whose usage to read (api_key_id).');
    }
    const { from, to } = usageRange(query);
    const apiKeyId = query.api_key_id ?? caller.id;
    const summary = await usageSummary(deps.db, { apiKeyId, from, to, groupBy: query.group_by });
    const body: UsageResource = {
      object: 'usage',
      from: from.toISOString(),
      to: to.toISOString(),
      group_by: query.group_by,
      api_key_id: apiKeyId === 'all' ? null : apiKeyId,
      data: summary.groups.map((group) =>
        'day' in group
          ? { day: group.day, ...countersOf(group) }
          : { model: group.model, ...countersOf(group) },
      ),
      total: countersOf(summary.total),
    };
    return c.json(body, 200);
  };
}
