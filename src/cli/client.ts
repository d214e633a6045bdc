/** The API client lives in src/common (daemons use it too, for live migration). */
export * from '../common/api-client.js';
