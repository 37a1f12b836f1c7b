export { main, loadAppSpec, control, formatStatus } from './main.ts';
