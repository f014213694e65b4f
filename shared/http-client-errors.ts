// Answers for requests Node's HTTP parser refuses before any handler sees them: headers over
// the size limit, malformed HTTP, a request not received in time. Node's own answers are bare
// status lines ("431" with no body); ours are problem+json with a stable `code`, like every other
// error, so every HTTP listener of every process (the API, the /metrics listeners) installs it.
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';

/** All request headers together, in bytes: Node's default, made explicit so the 431 can say it. */
export const MAX_HEADER_BYTES = 16 * 1024;

interface Answer {
  status: number;
  reason: string;
  code: string;
  title: string;
  detail: string;
}

type ParserError = Error & { code?: string; reason?: string; rawPacket?: Buffer };

function answerFor(error: ParserError): Answer {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        reason: 'Request Header Fields Too Large',
        code: 'headers_too_large',
        title: 'Request header fields too large',
        detail: `The request line and headers must not exceed ${MAX_HEADER_BYTES} bytes together.`,
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        status: 413,
        reason: 'Payload Too Large',
        code: 'payload_too_large',
        title: 'Request body too large',
        detail: 'The chunk extensions of the request body are too large.',
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        reason: 'Request Timeout',
        code: 'request_timeout',
        title: 'The request was not received in time',
        detail: 'The request was not received completely in time.',
      };
    default: {
      const why = typeof error.reason === 'string' && error.reason ? ` (${error.reason})` : '';
      return {
        status: 400,
        reason: 'Bad Request',
        code: 'bad_request',
        title: 'Bad request',
        detail: `The request is not valid HTTP/1.1${why}.`,
      };
    }
  }
}

/** The request target from the bytes the parser choked on, when they start with a request line. */
function instanceOf(error: ParserError): string {
  const head = error.rawPacket?.subarray(0, 4096).toString('latin1') ?? '';
  const target = /^[A-Z]+ ([^ \r\n]+) HTTP\//.exec(head)?.[1] ?? '';
  return target.split('?')[0]?.slice(0, 2048) ?? '';
}

export interface ClientErrorOptions {
  /** Told of every answer (for a log line or a metric); must not throw. */
  onAnswer?: (answer: { status: number; code: string }, error: Error) => void;
}

/** A 'clientError' listener: a problem+json answer on the socket, then the connection closes. */
export function createClientErrorHandler(options: ClientErrorOptions = {}) {
  return (error: ParserError, socket: Duplex): void => {
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    // A reset connection has no one to answer, and a response already started must not be corrupted.
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const answer = answerFor(error);
    options.onAnswer?.({ status: answer.status, code: answer.code }, error);
    const body = JSON.stringify({
      type: `urn:easel:problem:${answer.code}`,
      title: answer.title,
      status: answer.status,
      detail: answer.detail,
      code: answer.code,
      instance: instanceOf(error),
      request_id: randomUUID(),
    });
    socket.end(
      `HTTP/1.1 ${answer.status} ${answer.reason}\r\n` +
        'Content-Type: application/problem+json\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Cache-Control: no-store\r\n' +
        'Connection: close\r\n\r\n' +
        body,
      () => socket.destroy(),
    );
  };
}

/** Installs the handler on a server (any node:http server, including @hono/node-server's). */
export function answerClientErrors(
  server: { on(event: 'clientError', listener: (error: Error, socket: Duplex) => void): unknown },
  options?: ClientErrorOptions,
): void {
  server.on('clientError', createClientErrorHandler(options));
}
