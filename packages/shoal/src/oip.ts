/** shoal/oip: the public API of @shoal/oip (see that package's index for an example). */
export * from '@shoal/oip';
