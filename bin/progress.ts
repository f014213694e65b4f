// A one-line progress bar on stderr, redrawn in place. Only for a terminal: when stderr is a pipe
// or a file, callers print plain lines (or nothing) instead, so logs never fill with \r frames.

export interface ProgressBar {
  /** Redraws (at most ~10 times a second unless `force`) with `done` of `total` and a suffix. */
  update(done: number, total: number, suffix: string, force?: boolean): void;
  /** Clears the line so the next output starts clean. */
  finish(): void;
}

const REDRAW_MS = 100;

export function createProgressBar(stream: NodeJS.WriteStream = process.stderr): ProgressBar | undefined {
  if (!stream.isTTY) return undefined;
  let last = 0;
  let drawn = false;
  return {
    update(done, total, suffix, force = false) {
      const now = performance.now();
      if (!force && now - last < REDRAW_MS) return;
      last = now;
      const columns = stream.columns || 80;
      const fraction = total > 0 ? Math.min(done / total, 1) : 0;
      const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
      // Fixed for a given terminal, so the bar does not jump as the suffix changes length.
      const width = columns >= 100 ? 30 : columns >= 60 ? 20 : 10;
      const filled = Math.round(fraction * width);
      let line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent} ${suffix}`;
      if (line.length > columns - 1) line = line.slice(0, columns - 1);
      stream.write(`\r${line}\x1b[K`);
      drawn = true;
    },
    finish() {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Decimal units, as download tools and the model hub show sizes. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
