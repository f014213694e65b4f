// What the three service processes (API, GPU worker, webhook sender) share at their edges: the
// handle their start…(config) function returns, so a test can run one in-process and stop it, and
// the thin `main.ts` around it (configuration from the environment, signals, exit codes).
import type { DestinationStream } from 'pino';
import { ConfigError } from './env.ts';

/** A started service. */
export interface ServiceHandle<Ready> {
  /** What its ready line reports (the API's URL, the worker's id, the listener's URL). */
  readonly ready: Ready;
  /**
   * Settles if the service fails on its own once started (its fatal line is logged by then): a
   * process then exits 1 so that its supervisor restarts it. Never rejects.
   */
  readonly failed: Promise<void>;
  /**
   * Stops it cleanly (what SIGTERM does) and resolves once everything it held is released and
   * its stopped line is logged; rejects (after logging why) if the shutdown failed. Calling it
   * again returns the same promise.
   */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A handle whose stop() runs `shutdown` once, however often it is called. */
export function serviceHandle<Ready>(
  ready: Ready,
  failed: Promise<void>,
  shutdown: (signal?: NodeJS.Signals) => Promise<void>,
): ServiceHandle<Ready> {
  let stopping: Promise<void> | undefined;
  return {
    ready,
    failed,
    stop(signal) {
      stopping ??= shutdown(signal);
      return stopping;
    },
  };
}

/** What a start…() function may be given besides its configuration. */
export interface ServiceDeps {
  /** Where its JSON log lines go (default: stdout), e.g. to a test that waits on them. */
  logDestination?: DestinationStream;
}

/** A start that failed and has logged why (its `… failed to start` line); the cause is attached. */
export class StartFailed extends Error {
  override name = 'StartFailed';
}

/**
 * The body of a service's `main.ts`: reads its configuration (a bad value: one line naming the
 * variable, exit 1), starts it (a failure: exit 1; the service logged why), then stops it on
 * SIGTERM or SIGINT (exit 0, or 1 if the shutdown failed) and exits 1 if it fails on its own.
 */
export async function runService<Config>(options: {
  /** Prefix of the configuration error line, e.g. `easel api`. */
  name: string;
  loadConfig: () => Config;
  start: (config: Config) => Promise<ServiceHandle<unknown>>;
}): Promise<void> {
  let config: Config;
  try {
    config = options.loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${options.name}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  let service: ServiceHandle<unknown>;
  try {
    service = await options.start(config);
  } catch (error) {
    if (!(error instanceof StartFailed)) {
      process.stderr.write(`${options.name}: ${error instanceof Error ? error.stack : String(error)}\n`);
    }
    process.exit(1);
  }
  void service.failed.then(() => process.exit(1));
  const stop = (signal: NodeJS.Signals) =>
    service.stop(signal).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
