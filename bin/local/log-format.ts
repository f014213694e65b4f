// How `easel start` shows its services' log lines: unchanged (JSON, one object a line) when stdout is
// a file or a pipe, and as readable one-liners when it is a terminal:
//   14:02:07.412 INFO  api      generation created generation_id=0b6c… request_id=3f1e…
// Lines that are not pino JSON (a stray warning on stderr) are shown as they are.

const LEVELS: Record<number, { label: string; color: number }> = {
  10: { label: 'TRACE', color: 90 },
  20: { label: 'DEBUG', color: 90 },
  30: { label: 'INFO', color: 32 },
  40: { label: 'WARN', color: 33 },
  50: { label: 'ERROR', color: 31 },
  60: { label: 'FATAL', color: 35 },
};

/** pino's own fields, and those every line of a service carries: shown by the columns or left out. */
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name', 'service', 'worker_id', 'v']);

export interface LogFormatOptions {
  /** ANSI colours (a terminal that has them). */
  color?: boolean;
  /** Width of the service column; the launcher passes its longest service label. */
  serviceWidth?: number;
}

function paint(color: boolean, code: number, text: string): string {
  return color ? `\x1b[${code}m${text}\x1b[0m` : text;
}

function clock(time: number): string {
  const d = new Date(time);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
}

interface SerializedError {
  type?: string;
  message?: string;
  stack?: string;
}

function isError(v: unknown): v is SerializedError {
  return typeof v === 'object' && v !== null && ('stack' in v || 'message' in v);
}

/** One output line (maybe followed by an indented stack trace) for one line a service printed. */
export function formatLogLine(service: string, line: string, options: LogFormatOptions = {}): string {
  const color = options.color ?? false;
  const label = paint(color, 36, service.padEnd(options.serviceWidth ?? service.length));
  let entry: Record<string, unknown> | undefined;
  if (line.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        entry = parsed as Record<string, unknown>;
      }
    } catch {
      // not JSON after all: shown as is below
    }
  }
  if (!entry || typeof entry.level !== 'number') return `${' '.repeat(18)} ${label} ${line}`;

  const level = LEVELS[entry.level] ?? { label: `L${entry.level}`, color: 0 };
  const time = typeof entry.time === 'number' ? clock(entry.time) : ' '.repeat(12);
  const fields: string[] = [];
  const stacks: string[] = [];
  for (const [key, v] of Object.entries(entry)) {
    if (HIDDEN.has(key) || v === undefined) continue;
    if (isError(v)) {
      fields.push(`${key}=${value(v.message ?? v.type ?? '')}`);
      if (v.stack && entry.level >= 40) stacks.push(v.stack);
      continue;
    }
    fields.push(`${key}=${value(v)}`);
  }
  const msg = typeof entry.msg === 'string' ? entry.msg : '';
  let out = `${paint(color, 90, time)} ${paint(color, level.color, level.label.padEnd(5))} ${label} ${msg}`;
  if (fields.length > 0) out += ` ${paint(color, 90, fields.join(' '))}`;
  for (const stack of stacks) {
    out += `\n${stack
      .split('\n')
      .map((l) => `    ${paint(color, 90, l.trim())}`)
      .join('\n')}`;
  }
  return out;
}
