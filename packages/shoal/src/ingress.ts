/** shoal/ingress: the public API of @shoal/ingress (see that package's index for an example). */
export * from '@shoal/ingress';
