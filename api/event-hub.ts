// Fans the process's Postgres notifications out to its event streams (GET /v1/events and
// GET /v1/generations/{id}/events). It rides the status listener's one LISTEN connection; a
// notification makes it read the generation once, render the resource once (output URLs
// presigned then) and hand the same snapshot to every stream that follows it. Reads are
// coalesced: one batch at a time, covering every notification that arrived meanwhile, so the
// database sees a bounded load however many clients listen, and never a poll per client.
//
// What feeds it (payload: a generation id unless noted):
//   GENERATION_STATUS_CHANNEL    a status change (claimed, requeued, succeeded, failed, canceled);
//   GENERATION_PROGRESS_CHANNEL  a persisted progress step (the worker writes ≤ 4 per second);
//   GENERATION_QUEUED_CHANNEL    the queue wake-up after creates (payload: a model): new
//                                generations for the streams of all a key's generations.
// A queued generation's position moves when one ahead of it leaves the queue, and, with fair
// turns (db/fair-queue.ts), when another key's new job lands ahead of it: after a status change,
// and after creates for the model, the positions of the followed queued generations of that model
// are recounted in one query, and those that moved are sent again.
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import {
  databaseNow,
  type EventRow,
  eventRowsOfKey,
  queuedSince,
  queuePositions,
  readEventRows,
} from '../db/generation-events.ts';
import {
  GENERATION_PROGRESS_CHANNEL,
  GENERATION_STATUS_CHANNEL,
  type QueueEstimateInputs,
  queueEstimateInputs,
} from '../db/generations.repository.ts';
import { GENERATION_QUEUED_CHANNEL } from '../db/queue.ts';
import { type GenerationStatus, TERMINAL_STATUSES } from '../db/types.ts';
import { toResource } from '../shared/generation-resource.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import type { ApiConfig } from './config.ts';
import { apiError, STREAMS_RETRY_AFTER_SECONDS } from './errors.ts';

/**
 * How far before a client's resume point a resume looks again for finished generations. A status
 * change is stamped with its transaction's start (`now()`) but seen at its commit, so a change can
 * arrive after others stamped later; this covers such transactions up to this long, and the
 * time the hub takes to pass a change on. The cost is a few events sent twice.
 */
export const RESUME_SLACK_MS = 30_000;
/** A resume sends at most this many finished generations (the last finished). */
export const RESUME_MAX_FINISHED = 1000;
/** After a failed read, the hub tries again this much later (the ids stay pending). */
const RETRY_DELAY_MS = 1000;
/** Finished generations are remembered this long, so late (stale) reads of them are dropped. */
const FINISHED_MEMORY_MS = 60_000;

/** A generation as the streams show it: read and rendered once for every stream that follows it. */
export interface GenerationSnapshot {
  id: string;
  apiKeyId: string;
  model: string | null;
  status: GenerationStatus;
  attempts: number;
  /** The row's updated_at (database clock, ms): orders snapshots of one generation, and is the resume point. */
  updatedAtMs: number;
  /** Grows with every read the hub starts: of two snapshots with the same updatedAtMs, the later read's wins. */
  readSeq: number;
  /** What a client can see change (status, step, position, cancel): equal keys show the same state. */
  key: string;
  /** The Generation resource (as GET /v1/generations/{id} answers), serialized. */
  resource: string;
}

export interface HubSubscriber {
  apiKeyId: string;
  /** Only this generation's snapshots; absent: every generation of the key. */
  generationId?: string;
  deliver(snapshot: GenerationSnapshot): void;
  /** The hub is closing (API shutdown): end the stream. */
  close(): void;
}

/** The status listener: its 'notification' (channel, payload) and 'connected' events. */
export interface NotificationSource {
  readonly events: EventEmitter;
}

export interface EventHubDeps {
  db: Db;
  store: ObjectStore;
  config: Pick<ApiConfig, 'RESULT_URL_TTL_SECONDS' | 'MAX_STREAMS_PER_KEY'>;
  logger: Logger;
  notifications: NotificationSource;
}

export interface EventHub {
  /** Counts a stream against its key's cap (429 too_many_streams beyond it); returns its release. */
  admit(apiKeyId: string): () => void;
  /** Subscribe before reading the current state, so no change committed after the read is missed. */
  subscribe(subscriber: HubSubscriber): () => void;
  /** The generation as it is now; undefined when the key has no such generation. */
  current(generationId: string, apiKeyId: string): Promise<GenerationSnapshot | undefined>;
  /**
   * The key's queued and running generations as they are now, plus (with `finishedAfterMs`, a
   * resume) those finished since; oldest change first. `nowMs`: the database clock before reading.
   */
  currentOfKey(
    apiKeyId: string,
    finishedAfterMs?: number,
  ): Promise<{ snapshots: GenerationSnapshot[]; nowMs: number }>;
  /** Open streams (all keys). */
  readonly streams: number;
  /** Ends every stream (subscribers' close()) and refuses new ones. */
  close(): Promise<void>;
}

interface Followed {
  apiKeyId: string;
  model: string | null;
  status: GenerationStatus;
  updatedAtMs: number;
  readSeq: number;
  /** While queued: the row and position last shown, to show it again when the position moves. */
  row?: EventRow;
  /** When it was seen finished (Date.now()), to forget it later. */
  finishedAt?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const isTerminal = (status: GenerationStatus) => TERMINAL_STATUSES.includes(status);

/** Whether `next` shows a newer state of a generation than `last` (same id). */
export function isNewer(
  next: Pick<GenerationSnapshot, 'updatedAtMs' | 'readSeq'>,
  last: Pick<GenerationSnapshot, 'updatedAtMs' | 'readSeq'>,
): boolean {
  return (
    next.updatedAtMs > last.updatedAtMs ||
    (next.updatedAtMs === last.updatedAtMs && next.readSeq >= last.readSeq)
  );
}

export function createEventHub(deps: EventHubDeps): EventHub {
  const { db, logger } = deps;
  const ttl = deps.config.RESULT_URL_TTL_SECONDS;
  const perGeneration = new Map<string, Set<HubSubscriber>>();
  /** Streams of all a key's generations. */
  const perKey = new Map<string, Set<HubSubscriber>>();
  const openPerKey = new Map<string, number>();
  /** Generations some stream follows: by id (perGeneration) or by key (perKey). */
  const followed = new Map<string, Followed>();
  /** Ids to read; those notified of a status change also recount their model's queue positions. */
  const pending = new Set<string>();
  const statusChanged = new Set<string>();
  /** Models whose queues got new jobs (the wake-up's payload; '' is every model). */
  const queuesGrew = new Set<string>();
  let discover = false;
  /** The database clock at the last look for new generations (queuedSince). */
  let discoveredAt: Date | undefined;
  let readSeq = 0;
  let pumping: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let streams = 0;

  const followsId = (id: string) => {
    if (perGeneration.has(id)) return true;
    const entry = followed.get(id);
    return entry !== undefined && perKey.has(entry.apiKeyId);
  };
  const followsQueued = () => {
    for (const entry of followed.values()) if (entry.status === 'queued') return true;
    return false;
  };
  const wanted = (id: string, apiKeyId: string) => perGeneration.has(id) || perKey.has(apiKeyId);

  function onNotification(channel: string, payload: string) {
    if (closed) return;
    // A payload that is not an id (sent by hand) must not wedge every later read.
    if (channel !== GENERATION_QUEUED_CHANNEL && !UUID.test(payload)) return;
    if (channel === GENERATION_STATUS_CHANNEL) {
      // An id no stream follows may be a new generation of a key whose streams follow it all, or
      // one ahead of a followed queued generation (its model's queue moves): read it too.
      if (!followsId(payload) && perKey.size === 0 && !followsQueued()) return;
      pending.add(payload);
      statusChanged.add(payload);
    } else if (channel === GENERATION_PROGRESS_CHANNEL) {
      // Progress comes after the claim, whose status change made its generation followed.
      if (!followsId(payload)) return;
      pending.add(payload);
    } else if (channel === GENERATION_QUEUED_CHANNEL) {
      const recount = followsQueued();
      if (perKey.size === 0 && !recount) return;
      if (perKey.size > 0) discover = true;
      if (recount) queuesGrew.add(payload);
    } else return;
    pump();
  }

  function onConnected() {
    // Notifications sent while the connection was down are lost: read everything followed again.
    if (closed) return;
    for (const id of followed.keys()) pending.add(id);
    for (const id of perGeneration.keys()) pending.add(id);
    if (perKey.size > 0) discover = true;
    pump();
  }

  deps.notifications.events.on('notification', onNotification);
  deps.notifications.events.on('connected', onConnected);

  /** Renders rows once; the queue estimate (ETA) once per model of the queued ones. */
  async function render(rows: readonly EventRow[], seq: number): Promise<GenerationSnapshot[]> {
    const models = [...new Set(rows.filter((row) => row.status === 'queued').map((row) => row.model))];
    const estimates = new Map<string | null, QueueEstimateInputs>(
      await Promise.all(models.map(async (model) => [model, await queueEstimateInputs(db, model)] as const)),
    );
    const now = Date.now();
    return Promise.all(
      rows.map(async (row) => {
        const position = row.status === 'queued' ? row.queue_position : null;
        const resource = await toResource(row, deps.store, ttl, position, estimates.get(row.model), now);
        return {
          id: row.id,
          apiKeyId: row.api_key_id,
          model: row.model,
          status: row.status,
          attempts: row.attempts,
          updatedAtMs: row.updated_at.getTime(),
          readSeq: seq,
          key: [
            row.status,
            row.attempts,
            row.progress_step,
            position,
            row.cancel_requested_at !== null,
            row.updated_at.getTime(),
          ].join('|'),
          resource: JSON.stringify(resource),
        };
      }),
    );
  }

  /** Remembers what the streams were last shown of a generation (newer snapshots only). */
  function remember(snapshot: GenerationSnapshot, row: EventRow | undefined) {
    const last = followed.get(snapshot.id);
    if (last && !isNewer(snapshot, last)) return;
    if (!wanted(snapshot.id, snapshot.apiKeyId)) {
      followed.delete(snapshot.id);
      return;
    }
    followed.set(snapshot.id, {
      apiKeyId: snapshot.apiKeyId,
      model: snapshot.model,
      status: snapshot.status,
      updatedAtMs: snapshot.updatedAtMs,
      readSeq: snapshot.readSeq,
      row: snapshot.status === 'queued' ? row : undefined,
      finishedAt: isTerminal(snapshot.status) ? Date.now() : undefined,
    });
  }

  function fanOut(snapshot: GenerationSnapshot) {
    for (const subscriber of perGeneration.get(snapshot.id) ?? []) subscriber.deliver(snapshot);
    for (const subscriber of perKey.get(snapshot.apiKeyId) ?? []) subscriber.deliver(snapshot);
  }

  function forgetFinished() {
    const before = Date.now() - FINISHED_MEMORY_MS;
    for (const [id, entry] of followed) {
      if (entry.finishedAt !== undefined && entry.finishedAt < before) followed.delete(id);
    }
  }

  /** One batch: new generations, the notified rows, then the queue positions that moved. */
  async function cycle(ids: Set<string>, changed: Set<string>, discovering: boolean, grew: Set<string>) {
    const seq = ++readSeq;
    if (discovering && perKey.size > 0) {
      const since = discoveredAt && new Date(discoveredAt.getTime() - RESUME_SLACK_MS);
      const found = await queuedSince(db, [...perKey.keys()], since);
      discoveredAt = found.now;
      for (const id of found.ids) if (!followed.has(id)) ids.add(id);
    }
    const read = await readEventRows(db, [...ids]);
    const rows = read.filter((row) => wanted(row.id, row.api_key_id));
    const snapshots = await render(rows, seq);
    snapshots.forEach((snapshot, i) => {
      remember(snapshot, rows[i]);
      fanOut(snapshot);
    });

    // A generation that left the queue (or came back to it), any key's, moves the ones behind it.
    const models = new Set(read.filter((row) => changed.has(row.id)).map((row) => row.model));
    const moves = (model: string | null) => models.has(model) || grew.has('') || grew.has(model ?? '');
    const queued = [...followed].filter(
      ([id, entry]) => entry.status === 'queued' && entry.row && moves(entry.model) && !ids.has(id),
    );
    if (queued.length === 0) return;
    const positionSeq = ++readSeq;
    const positions = await queuePositions(
      db,
      [...new Set(queued.map(([, entry]) => entry.model))],
      queued.map(([id]) => id),
    );
    const moved: EventRow[] = [];
    for (const [id, entry] of queued) {
      const position = positions.get(id);
      // No longer queued: its own status notification says what it became.
      if (position === undefined || !entry.row || position === entry.row.queue_position) continue;
      moved.push({ ...entry.row, queue_position: position });
    }
    const again = await render(moved, positionSeq);
    again.forEach((snapshot, i) => {
      remember(snapshot, moved[i]);
      fanOut(snapshot);
    });
  }

  function pump() {
    if (pumping || closed || retryTimer) return;
    pumping = (async () => {
      while (!closed && (pending.size > 0 || discover || queuesGrew.size > 0)) {
        const ids = new Set(pending);
        const changed = new Set(statusChanged);
        const grew = new Set(queuesGrew);
        const discovering = discover;
        pending.clear();
        statusChanged.clear();
        queuesGrew.clear();
        discover = false;
        try {
          await cycle(ids, changed, discovering, grew);
        } catch (error) {
          // Not lost: read again shortly (the database may be restarting).
          for (const id of ids) pending.add(id);
          for (const id of changed) statusChanged.add(id);
          for (const model of grew) queuesGrew.add(model);
          discover ||= discovering;
          logger.warn({ err: error, retry_in_ms: RETRY_DELAY_MS }, 'event hub read failed; retrying');
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            pump();
          }, RETRY_DELAY_MS).unref();
          return;
        }
        forgetFinished();
      }
    })().finally(() => {
      pumping = undefined;
    });
  }

  function removeFrom(map: Map<string, Set<HubSubscriber>>, key: string, subscriber: HubSubscriber) {
    const set = map.get(key);
    set?.delete(subscriber);
    if (set?.size === 0) map.delete(key);
  }

  return {
    admit(apiKeyId) {
      if (closed) throw apiError('service_unavailable', 'The API is shutting down; reconnect shortly.');
      const open = openPerKey.get(apiKeyId) ?? 0;
      const cap = deps.config.MAX_STREAMS_PER_KEY;
      if (open >= cap) {
        throw apiError(
          'too_many_streams',
          `This API key already has ${cap} event streams open on this server, its limit; close one first.`,
          { headers: { 'Retry-After': String(STREAMS_RETRY_AFTER_SECONDS) } },
        );
      }
      openPerKey.set(apiKeyId, open + 1);
      streams++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        streams--;
        const left = (openPerKey.get(apiKeyId) ?? 1) - 1;
        if (left > 0) openPerKey.set(apiKeyId, left);
        else openPerKey.delete(apiKeyId);
      };
    },

    subscribe(subscriber) {
      const { generationId, apiKeyId } = subscriber;
      const map = generationId === undefined ? perKey : perGeneration;
      const key = generationId ?? apiKeyId;
      // The first stream of all a key's generations: new ones are looked for from its opening on.
      if (generationId === undefined && perKey.size === 0) discoveredAt = undefined;
      let set = map.get(key);
      if (!set) {
        set = new Set();
        map.set(key, set);
      }
      set.add(subscriber);
      return () => {
        removeFrom(map, key, subscriber);
        // Forget what no stream follows any more.
        if (generationId !== undefined) {
          const entry = followed.get(generationId);
          if (entry && !wanted(generationId, entry.apiKeyId)) followed.delete(generationId);
        } else if (!perKey.has(apiKeyId)) {
          for (const [id, entry] of followed) {
            if (entry.apiKeyId === apiKeyId && !perGeneration.has(id)) followed.delete(id);
          }
        }
      };
    },

    async current(generationId, apiKeyId) {
      const seq = ++readSeq;
      const [row] = await readEventRows(db, [generationId]);
      if (!row || row.api_key_id !== apiKeyId) return undefined;
      const [snapshot] = await render([row], seq);
      if (snapshot) remember(snapshot, row);
      return snapshot;
    },

    async currentOfKey(apiKeyId, finishedAfterMs) {
      const seq = ++readSeq;
      const now = await databaseNow(db);
      discoveredAt ??= now;
      const rows = await eventRowsOfKey(
        db,
        apiKeyId,
        finishedAfterMs === undefined ? undefined : new Date(finishedAfterMs),
        RESUME_MAX_FINISHED,
      );
      rows.sort((a, b) => a.updated_at.getTime() - b.updated_at.getTime());
      const snapshots = await render(rows, seq);
      snapshots.forEach((snapshot, i) => {
        remember(snapshot, rows[i]);
      });
      return { snapshots, nowMs: now.getTime() };
    },

    get streams() {
      return streams;
    },

    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(retryTimer);
      deps.notifications.events.off('notification', onNotification);
      deps.notifications.events.off('connected', onConnected);
      const subscribers = [...perGeneration.values(), ...perKey.values()].flatMap((set) => [...set]);
      for (const subscriber of subscribers) subscriber.close();
      await pumping;
    },
  };
}
