// An HTTP answer other than 200, as the server sends it: a status and one line of text. Anything
// else thrown while answering becomes a 500 with its redacted first line (server.ts).
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}
