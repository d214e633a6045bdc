/** An error that ends the CLI with a given exit status (125 for usage errors, as Docker). */
export class ExitError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
