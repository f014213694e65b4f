// The worker's one LISTEN connection for cancel requests. The API NOTIFYs the generation id when
// a client cancels a running generation; if it is the one this worker runs, its job is aborted
// (the pipeline stops at the next denoising step). Notifications sent while the connection is
// down are lost, so after a reconnect the watched generations are checked in the database; the
// handler's claim and every progress write check the row as well.
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { GENERATION_CANCEL_CHANNEL, isCancelRequested } from '../db/generations.repository.ts';
import { createListenConnection, type ListenConnection } from '../db/listen-connection.ts';

export interface CancelWatcher {
  /** Until the returned function is called, a cancel request for the id calls `onCancel`. */
  watch(generationId: string, onCancel: () => void): () => void;
}

export interface CancelListener extends CancelWatcher {
  readonly connection: ListenConnection;
  start(): Promise<boolean>;
  close(): Promise<void>;
}

export function createCancelListener(options: {
  connectionString: string;
  db: Db;
  logger: Logger;
  applicationName?: string;
}): CancelListener {
  const logger = options.logger.child({ component: 'cancel-listener' });
  const watched = new Map<string, () => void>();
  const connection = createListenConnection({
    connectionString: options.connectionString,
    channels: [GENERATION_CANCEL_CHANNEL],
    onNotification(_channel, generationId) {
      const cancel = watched.get(generationId);
      if (!cancel) return;
      logger.info({ generation_id: generationId }, 'cancel requested');
      cancel();
    },
    logger,
    applicationName: options.applicationName ?? 'easel-worker-cancel',
  });

  let dropped = false;
  connection.events.on('disconnected', () => {
    dropped = true;
  });
  connection.events.on('connected', () => {
    if (!dropped) return;
    dropped = false;
    void recheck();
  });

  async function recheck() {
    for (const [generationId, cancel] of watched) {
      try {
        if (await isCancelRequested(options.db, generationId)) {
          logger.info({ generation_id: generationId }, 'cancel requested while not listening');
          cancel();
        }
      } catch (error) {
        // The next progress write checks again.
        logger.warn({ err: error, generation_id: generationId }, 'cancel re-check failed');
      }
    }
  }

  return {
    connection,
    watch(generationId, onCancel) {
      watched.set(generationId, onCancel);
      return () => {
        if (watched.get(generationId) === onCancel) watched.delete(generationId);
      };
    },
    start: () => connection.start(),
    close: () => connection.close(),
  };
}
