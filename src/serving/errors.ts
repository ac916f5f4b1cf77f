/**
 * Why serving/ refused or failed a request. api/ maps each reason to its catalogue entry (and
 * HTTP status); serving/ stays free of HTTP.
 */
export type ServingErrorReason =
  | 'invalid' // a field's value cannot be served (param names it)
  | 'context_length' // prompt (+ max_tokens) exceeds the context
  | 'no_chat_template' // a chat request to a model without a chat template
  | 'chat_template' // the template raised (e.g. roles must alternate)
  | 'overloaded' // waiting queue full
  | 'shutting_down'
  | 'engine_failed' // a non-retryable engine error: nothing can be served until a restart
  | 'generation_failed' // the engine failed the request's step
  | 'cancelled'; // the client went away before the request was submitted (nobody reads the answer)

export class ServingError extends Error {
  constructor(
    readonly reason: ServingErrorReason,
    message: string,
    readonly param: string | null = null,
    readonly retryAfterSeconds?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ServingError';
  }
}
