/**
 * `rankflow ui [--port P] [--host H]`: the dashboard in the browser (cli/ui/): sweeps, runs with live curves,
 * the paper table and the plots, read from the configured Temporal server and store as `status`, `ls`, `logs`,
 * `table` and `plot` read them. Loopback only unless --host says otherwise (then with a warning: anyone who can
 * reach the port can pause or cancel sweeps).
 */
import { UserError } from '../../core/errors.js';
import { defineCommand, intFlag } from '../args.js';
import { resolveConfig } from '../config.js';
import { LiveSource } from '../ui/source.js';
import { LOOPBACK, startUi } from '../ui/server.js';

export const uiCommand = defineCommand({
  name: 'ui',
  summary: 'the dashboard in the browser: sweeps, runs with live curves, the paper table and plots',
  description: `Serves the dashboard on http://127.0.0.1:8421/ (Ctrl-C stops it), reading the configured Temporal
server and artifact store (or the embedded services, which must be running: \`rankflow submit\` starts them).`,
  maxArgs: 0,
  options: {
    port: { type: 'string', arg: 'P', help: 'port (default 8421; 0: a free one)' },
    host: {
      type: 'string',
      arg: 'ADDR',
      help: 'address to bind (default 127.0.0.1); another address exposes the buttons to the network',
    },
  },
  async run({ values }) {
    const port = intFlag('ui', 'port', values.port, 8421, 0);
    if (port > 65535) throw new UserError(`ui: --port ${port}: expected 0 to 65535`);
    const host = values.host ?? '127.0.0.1';
    const config = await resolveConfig({ start: false });
    const source = new LiveSource(config);
    let ui;
    try {
      ui = await startUi(source, { host, port });
    } catch (e) {
      await source.close();
      throw new UserError(`ui: cannot listen on ${host}:${port} (${(e as Error).message}); pick another --port`);
    }
    if (!LOOPBACK.has(host))
      console.error(
        `rankflow ui: warning: listening on ${host}, not loopback: anyone who can reach port ${port} can see every sweep and pause or cancel it`,
      );
    // result records are write-once: read them all now, so that a first visit to a big sweep is fast
    source
      .warm()
      .catch((e: unknown) => console.error(`rankflow ui: could not read the results yet: ${(e as Error).message}`));
    console.error(`rankflow ui: ${ui.url}  (${config.temporalAddress}, ${config.source}); Ctrl-C stops it`);
    await new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await ui.close();
    return 0;
  },
});
