// One error type with a stable code (habit 8, docs/architecture.md). `retryable` tells the queue whether a job that
// failed with it should be tried again; the CLI maps `exitCode` at its one error boundary.

export class VfleetError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly exitCode: number;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; exitCode?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VfleetError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isVfleetError(e: unknown): e is VfleetError {
  return e instanceof VfleetError;
}
