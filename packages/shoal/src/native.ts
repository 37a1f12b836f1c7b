/** shoal/native: the public API of @shoal/native (see that package's index for an example). */
export * from '@shoal/native';
