/** Light activities: they run on the workflow's own (control) task queue, as do the child workflows. */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

export const light = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 20 },
});
