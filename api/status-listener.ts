// One LISTEN connection per API process: requests waiting on a generation (`Prefer: wait`)
// subscribe here instead of holding a pool connection, and the worker's terminal status
// updates NOTIFY it. A dropped connection is re-established with backoff; notifications sent
// meanwhile are lost, so waiting requests then simply run into their own timeout.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from 'pino';
import { GENERATION_STATUS_CHANNEL } from '../db/generations.repository.ts';

export interface StatusSubscription {
  /**
   * Resolves true once a notification for the id has arrived (including one that arrived
   * before this call and was not yet consumed); false after `timeoutMs`, when `signal` aborts,
   * or when the listener closes.
   */
  next(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

export interface StatusListener {
  /** Subscribe before the status can change (before the commit that makes the row visible). */
  subscribe(generationId: string): StatusSubscription;
  /** Connects and LISTENs; resolves with whether the first attempt worked (it retries either way). */
  start(): Promise<boolean>;
  readonly connected: boolean;
  /** 'connected', 'disconnected' (error?) and 'waiting' (generation id): for tests and diagnostics. */
  readonly events: EventEmitter;
  /** Wakes every waiter (they answer with what they have) and drops the connection. */
  close(): Promise<void>;
}

export interface StatusListenerOptions {
  connectionString: string;
  logger: Logger;
  applicationName?: string;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
}

interface Waiter {
  pending: boolean;
  wake?: (notified: boolean) => void;
}

export function createStatusListener(options: StatusListenerOptions): StatusListener {
  const logger = options.logger.child({ component: 'status-listener' });
  const minDelay = options.minReconnectDelayMs ?? 100;
  const maxDelay = options.maxReconnectDelayMs ?? 5_000;
  const events = new EventEmitter();
  const waiters = new Map<string, Set<Waiter>>();
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let delay = minDelay;
  let closed = false;
  let started: Promise<boolean> | undefined;

  const onNotification = (message: pg.Notification) => {
    if (message.channel !== GENERATION_STATUS_CHANNEL || !message.payload) return;
    for (const waiter of waiters.get(message.payload) ?? []) {
      if (waiter.wake) waiter.wake(true);
      else waiter.pending = true;
    }
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
      application_name: options.applicationName ?? 'easel-api-listener',
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
        logger.warn({ err: error }, 'status listener connection lost; reconnecting');
        events.emit('disconnected', error);
      } else if (!closed) {
        logger.warn({ err: error, retry_in_ms: delay }, 'status listener could not connect');
      }
      scheduleReconnect();
    };
    candidate.on('error', lose);
    candidate.on('end', () => lose());
    candidate.on('notification', onNotification);
    try {
      await candidate.connect();
      await candidate.query(`LISTEN ${GENERATION_STATUS_CHANNEL}`);
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
    logger.info('status listener connected');
    events.emit('connected');
    return true;
  }

  function subscribe(generationId: string): StatusSubscription {
    const waiter: Waiter = { pending: false };
    let set = waiters.get(generationId);
    if (!set) {
      set = new Set();
      waiters.set(generationId, set);
    }
    set.add(waiter);
    return {
      next(timeoutMs, signal) {
        if (waiter.pending) {
          waiter.pending = false;
          return Promise.resolve(true);
        }
        if (closed || signal?.aborted || timeoutMs <= 0) return Promise.resolve(false);
        return new Promise<boolean>((resolve) => {
          const finish = (notified: boolean) => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            waiter.wake = undefined;
            resolve(notified);
          };
          const onAbort = () => finish(false);
          const timer = setTimeout(() => finish(false), timeoutMs);
          signal?.addEventListener('abort', onAbort, { once: true });
          waiter.wake = finish;
          events.emit('waiting', generationId);
        });
      },
      close() {
        waiter.wake?.(false);
        const current = waiters.get(generationId);
        current?.delete(waiter);
        if (current?.size === 0) waiters.delete(generationId);
      },
    };
  }

  return {
    subscribe,
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
      for (const set of waiters.values()) for (const waiter of set) waiter.wake?.(false);
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}
