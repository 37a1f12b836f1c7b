#!/usr/bin/env node
// The shoal command of the umbrella package: the same CLI as @shoal/cli's bin, which it runs.
import '@shoal/cli/bin';
