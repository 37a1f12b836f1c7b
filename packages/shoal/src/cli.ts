/** shoal/cli: the public API of @shoal/cli (see that package's index for an example). */
export * from '@shoal/cli';
