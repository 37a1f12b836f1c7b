/** shoal/cache: the public API of @shoal/cache (see that package's index for an example). */
export * from '@shoal/cache';
