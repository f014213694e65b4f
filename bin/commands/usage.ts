// `easel usage`: what an API key's generations cost on the accelerators (GET /v1/usage on a
// running server), as a small table with totals, or the server's answer as JSON.

import type { UsageResource } from '../../api/usage.schemas.ts';
import { createClient } from '../remote/client.ts';
import { apiKeyFrom, DEFAULT_URL, serverUrl } from '../remote/connection.ts';
import { choiceFlag, parseFlags } from './cli.ts';

export const usageUsage = `usage: easel usage [--from D] [--to D] [--group-by day|model] [--key ID|all] [--json]

Prints what the accelerators spent on an API key's generations (GET /v1/usage): per UTC day or
per model, the attempts that ran, the generations that succeeded, images, pixel-steps (width ×
height × steps × images) and accelerator time, with totals. Every attempt that ran counts, also
failed, canceled and retried ones.

  --from D                 start, inclusive: YYYY-MM-DD (00:00 UTC) or an RFC 3339 date-time
                           (default: 00:00 UTC 29 days before the last day, so 30 UTC days)
  --to D                   end, exclusive, in the same forms (default: now)
  --group-by day|model     one row per UTC day (default) or per model
  --key ID|all             another API key's usage (its id, as \`easel keys list\` shows it), or
                           every key's together; needs an admin API key
  --json                   print the server's answer (the usage resource) as JSON
  --url URL                the server (default: EASEL_URL, else ${DEFAULT_URL})
  --api-key KEY            the API key to call with (default: EASEL_API_KEY, else the one
                           \`easel start\` keeps in EASEL_DATA_DIR/api-key)

Server-side failures print one line, \`code: detail\`, and exit 1.
`;

const COLUMNS = ['attempts', 'generations', 'images', 'pixel-steps', 'accelerator'] as const;

type Counters = UsageResource['total'];

function cells(counters: Counters): string[] {
  return [
    String(counters.attempts),
    String(counters.generations),
    String(counters.images),
    String(counters.pixel_steps),
    // Microseconds are in the JSON; seconds to the millisecond are what a person compares.
    `${(counters.accelerator_ms / 1000).toFixed(3)} s`,
  ];
}

/** The human form: a header line, then one aligned row per group and a total row. */
export function usageTable(usage: UsageResource): string {
  const whose = usage.api_key_id === null ? 'all keys' : `key ${usage.api_key_id}`;
  const header = `usage of ${whose} from ${usage.from} to ${usage.to}`;
  const first = usage.group_by === 'day' ? 'day' : 'model';
  const rows = usage.data.map((group) => [
    'day' in group ? group.day : (group.model ?? '(no model)'),
    ...cells(group),
  ]);
  const table = [[first, ...COLUMNS], ...rows, ['total', ...cells(usage.total)]];
  const widths =
    table[0]?.map((_, column) => Math.max(...table.map((row) => row[column]?.length ?? 0))) ?? [];
  // Labels left-aligned, numbers right-aligned, two spaces between columns.
  const line = (row: string[]) =>
    row
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join('  ')
      .trimEnd();
  const body = table.map(line);
  if (rows.length === 0) body.splice(1, 0, '(no usage in this range)');
  return `${header}\n${body.join('\n')}\n`;
}

export async function usageCommand(args: string[]): Promise<void> {
  const { values } = parseFlags(args, {
    from: { type: 'string' },
    to: { type: 'string' },
    'group-by': { type: 'string' },
    key: { type: 'string' },
    json: { type: 'boolean' },
    url: { type: 'string' },
    'api-key': { type: 'string' },
  });
  const groupBy = choiceFlag(values['group-by'], '--group-by', ['day', 'model'] as const, 'day');
  const url = serverUrl(values.url);
  const apiKey = apiKeyFrom(values['api-key'], '--api-key');
  // The dates go to the server as given: it says precisely what is wrong with one (422).
  const query = new URLSearchParams();
  if (values.from !== undefined) query.set('from', values.from);
  if (values.to !== undefined) query.set('to', values.to);
  if (values['group-by'] !== undefined) query.set('group_by', groupBy);
  if (values.key !== undefined) query.set('api_key_id', values.key);

  const usage = await createClient({ baseUrl: url, apiKey }).getUsage(query);
  process.stdout.write(values.json ? `${JSON.stringify(usage)}\n` : usageTable(usage));
}
