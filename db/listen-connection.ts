// One dedicated Postgres connection that LISTENs on a few channels, re-established with
// backoff when it drops. Notifications sent while it is down are lost: users re-check the
// database on 'connected' (after a drop) or fall back to their own timeouts.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from 'pino';

/** Logged on every (re)connect; shared/log-events.ts re-exports it for the code that waits on it. */
export const LISTEN_CONNECTION_READY = 'listen connection ready';

export interface ListenConnection {
  /** Connects and LISTENs; resolves with whether the first attempt worked (it retries either way). */
  start(): Promise<boolean>;
  readonly connected: boolean;
  /** 'connected' (every successful (re)connection) and 'disconnected' (error?). */
  readonly events: EventEmitter;
  /** Drops the connection and stops reconnecting. */
  close(): Promise<void>;
}

export interface ListenConnectionOptions {
  connectionString: string;
  channels: readonly string[];
  /** Called for every notification on `channels`; `payload` is '' when the sender gave none. */
  onNotification(channel: string, payload: string): void;
  logger: Logger;
  /** Names the connection in pg_stat_activity and in log lines. */
  applicationName: string;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Emit on this emitter instead of a new one (lets a wrapper share its own events). */
  events?: EventEmitter;
}

const CHANNEL_NAME = /^[a-z_][a-z0-9_]*$/;

export function createListenConnection(options: ListenConnectionOptions): ListenConnection {
  for (const channel of options.channels) {
    // Channels are identifiers in LISTEN, which takes no bind parameters.
    if (!CHANNEL_NAME.test(channel)) throw new Error(`invalid channel name: ${channel}`);
  }
  const { logger } = options;
  const minDelay = options.minReconnectDelayMs ?? 100;
  const maxDelay = options.maxReconnectDelayMs ?? 5_000;
  const events = options.events ?? new EventEmitter();
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let delay = minDelay;
  let closed = false;
  let started: Promise<boolean> | undefined;

  // Every notification on our channels is delivered, payload or not: an empty payload is a
  // signal in its own right (the API's coalesced queue wake-up carries none). Dropping empty
  // payloads here once left API-created jobs to the worker's backstop poll.
  const onNotification = (message: pg.Notification) => {
    if (!options.channels.includes(message.channel)) return;
    options.onNotification(message.channel, message.payload ?? '');
  };

  function scheduleReconnect() {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void attempt();
    }, delay);
    retryTimer.unref();
    delay = Math.min(delay * 2, maxDelay);
  }

  async function attempt(): Promise<boolean> {
    const candidate = new pg.Client({
      connectionString: options.connectionString,
      application_name: options.applicationName,
      connectionTimeoutMillis: 5_000,
      keepAlive: true,
    });
    let gone = false;
    const lose = (error?: unknown) => {
      if (gone) return;
      gone = true;
      candidate.removeListener('notification', onNotification);
      candidate.end().catch(() => {});
      if (client === candidate) {
        client = undefined;
        logger.warn({ err: error }, 'listen connection lost; reconnecting');
        events.emit('disconnected', error);
      } else if (!closed) {
        logger.warn({ err: error, retry_in_ms: delay }, 'listen connection could not connect');
      }
      scheduleReconnect();
    };
    candidate.on('error', lose);
    candidate.on('end', () => lose());
    candidate.on('notification', onNotification);
    try {
      await candidate.connect();
      for (const channel of options.channels) await candidate.query(`LISTEN ${channel}`);
    } catch (error) {
      lose(error);
      return false;
    }
    if (gone) return false;
    if (closed) {
      gone = true;
      await candidate.end().catch(() => {});
      return false;
    }
    client = candidate;
    delay = minDelay;
    logger.info({ channels: options.channels }, LISTEN_CONNECTION_READY);
    events.emit('connected');
    return true;
  }

  return {
    start() {
      started ??= attempt();
      return started;
    },
    get connected() {
      return client !== undefined;
    },
    events,
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      retryTimer = undefined;
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}
