export * from './runspec.js';
export * from './events.js';
export * from './result.js';
