// One LISTEN connection per API process: requests waiting on a generation (`Prefer: wait`)
// subscribe here instead of holding a pool connection, and the worker's status updates NOTIFY
// it. The event streams' hub (event-hub.ts) hears every notification through `events` too. A
// dropped connection is re-established with backoff; notifications sent meanwhile are lost, so
// waiting requests then simply run into their own timeout (the hub reads again on 'connected').
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { GENERATION_PROGRESS_CHANNEL, GENERATION_STATUS_CHANNEL } from '../db/generations.repository.ts';
import { createListenConnection } from '../db/listen-connection.ts';
import { GENERATION_QUEUED_CHANNEL } from '../db/queue.ts';

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
  /**
   * 'connected', 'disconnected' (error?), 'waiting' (generation id: for tests and diagnostics) and
   * 'notification' (channel, payload: every notification heard, for the event hub).
   */
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
  const events = new EventEmitter();
  const waiters = new Map<string, Set<Waiter>>();
  let closed = false;
  const connection = createListenConnection({
    connectionString: options.connectionString,
    // Progress and queue wake-ups only feed the event hub (cheap: a few small messages a second).
    channels: [GENERATION_STATUS_CHANNEL, GENERATION_PROGRESS_CHANNEL, GENERATION_QUEUED_CHANNEL],
    onNotification(channel, payload) {
      if (channel === GENERATION_STATUS_CHANNEL) {
        for (const waiter of waiters.get(payload) ?? []) {
          if (waiter.wake) waiter.wake(true);
          else waiter.pending = true;
        }
      }
      events.emit('notification', channel, payload);
    },
    logger: options.logger.child({ component: 'status-listener' }),
    applicationName: options.applicationName ?? 'easel-api-listener',
    minReconnectDelayMs: options.minReconnectDelayMs,
    maxReconnectDelayMs: options.maxReconnectDelayMs,
    events,
  });

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
    start: () => connection.start(),
    get connected() {
      return connection.connected;
    },
    events,
    async close() {
      closed = true;
      for (const set of waiters.values()) for (const waiter of set) waiter.wake?.(false);
      await connection.close();
    },
  };
}
