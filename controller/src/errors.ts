/** Typed error with a stable code; the HTTP error handler maps it to a JSON body. */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const notFound = (what: string, id: string) => new AppError(404, `${what.toUpperCase()}_NOT_FOUND`, `${what} '${id}' does not exist`);
export const conflict = (code: string, message: string) => new AppError(409, code, message);
export const badRequest = (code: string, message: string) => new AppError(400, code, message);
