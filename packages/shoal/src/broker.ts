/** shoal/broker: the public API of @shoal/broker (see that package's index for an example). */
export * from '@shoal/broker';
