// A service of ours run inside the test's own process through its start…(config) function, with
// the same handle as one run as a child process (bin/local/service-process.ts): its JSON log
// lines, parsed as they are written, its ready line, waiters on later lines, stop().
import { createLogWatch, type LogRecord, type Service } from '../../bin/local/service-process.ts';
import type { ServiceDeps, ServiceHandle } from '../../shared/service.ts';

export interface InProcessService<Ready = unknown> extends Service {
  /** What start…() returned. */
  handle: ServiceHandle<Ready>;
}

export async function startInProcess<Ready>(options: {
  name: string;
  readyMsg: string;
  start: (deps: ServiceDeps) => Promise<ServiceHandle<Ready>>;
  onLine?: (line: string) => void;
}): Promise<InProcessService<Ready>> {
  const watch = createLogWatch(options.name, { onLine: options.onLine });
  let partial = '';
  // pino writes each line whole, synchronously; a line split across writes is joined anyway.
  const logDestination = {
    write(chunk: string) {
      partial += chunk;
      for (let end = partial.indexOf('\n'); end !== -1; end = partial.indexOf('\n')) {
        watch.push(partial.slice(0, end));
        partial = partial.slice(end + 1);
      }
    },
  };
  const readyLine = watch.waitForLog(options.readyMsg);
  readyLine.catch(() => {}); // awaited below once started; a failed start throws its own error
  let handle: ServiceHandle<Ready>;
  try {
    handle = await options.start({ logDestination });
  } catch (error) {
    watch.end('failed to start');
    throw error;
  }
  const ready: LogRecord = await readyLine;
  let stopped: Promise<number> | undefined;
  return {
    name: options.name,
    handle,
    ready,
    recent: watch.recent,
    waitForLog: watch.waitForLog,
    // The exit code a process would have: 0 once stopped cleanly, 1 if the shutdown failed.
    stop(signal) {
      stopped ??= handle.stop(signal).then(
        () => 0,
        () => 1,
      );
      return stopped.finally(() => watch.end('stopped'));
    },
  };
}
