// Progress writes as they are committed: a LISTEN on the worker's progress channel, so a test can
// act (cancel, stop storage) the moment a generation has taken a step, instead of polling.
import pg from 'pg';
import { GENERATION_PROGRESS_CHANNEL } from '../../db/generations.repository.ts';

export interface ProgressNotifications {
  /** Calls `handler` on each progress write of the generation until `off(id)`. */
  on(id: string, handler: () => void): void;
  off(id: string): void;
  close(): Promise<void>;
}

export async function listenForProgress(connectionString: string): Promise<ProgressNotifications> {
  const client = new pg.Client({ connectionString });
  const handlers = new Map<string, () => void>();
  await client.connect();
  client.on('notification', (message) => {
    if (message.payload) handlers.get(message.payload)?.();
  });
  await client.query(`LISTEN ${GENERATION_PROGRESS_CHANNEL}`);
  return {
    on: (id, handler) => void handlers.set(id, handler),
    off: (id) => void handlers.delete(id),
    close: () => client.end(),
  };
}
