// Errors that users see. A ChorusError's message names what is wrong (file, line, field path);
// the CLI prints it without a stack trace.
export class ChorusError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChorusError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
