/** The protocol's size bounds, defined once for the handler, the route and the decoder. */

/** Largest request body the handler and the route accept: 64 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

/**
 * Largest element count of one input tensor when no bound is given. Every element takes at least one byte of
 * body in either encoding (a BOOL in binary; `0,` in JSON), so this default, equal to the body limit, never
 * refuses a tensor that fits in a default-sized body; it refuses shapes that claim more than any body could hold.
 */
export const DEFAULT_MAX_ELEMENTS = DEFAULT_MAX_BODY_BYTES;
