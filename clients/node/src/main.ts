// The command line:
//
//   node dist/src/main.js [--host 127.0.0.1] [--port 50051] [--grace 5]
//                         [--work-ms 0] [--log-level info]
//
// Prints `listening on HOST:PORT` on stdout once it serves; SIGTERM or SIGINT
// stops it gracefully (health turns NOT_SERVING, calls in flight get --grace
// seconds) and it exits 0. A second signal cancels what is left at once.

import { parseArgs } from 'node:util';

import { Logger, LEVELS, isLevel } from './log';
import { type RunningServer, startServer } from './server';

const USAGE = `Quote-flow FlowHandler (TypeScript, @grpc/grpc-js).

Usage: node dist/src/main.js [options]

  --host HOST        address to bind (default 127.0.0.1)
  --port PORT        port to bind; 0 picks a free one (default: $PORT or 50051)
  --grace SECONDS    time calls in flight get on SIGTERM/SIGINT (default 5)
  --work-ms MS       simulated work per call, to try the deadline (default 0)
  --log-level LEVEL  ${LEVELS.join(', ')} (default: $LOG_LEVEL or info)
  -h, --help         this text
`;

class UsageError extends Error {}

/** A non-negative decimal number (an integer when `integer`), at most `max`. */
function number(name: string, text: string, { integer = false, max = Infinity } = {}): number {
  const pattern = integer ? /^\d+$/ : /^\d+(\.\d+)?$/;
  const value = Number(text);
  if (!pattern.test(text) || value > max) {
    throw new UsageError(`${name}: not a valid value: ${JSON.stringify(text)}`);
  }
  return value;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: process.env['PORT'] || '50051' },
      grace: { type: 'string', default: '5' },
      'work-ms': { type: 'string', default: '0' },
      'log-level': { type: 'string', default: process.env['LOG_LEVEL'] || 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const level = values['log-level'].toLowerCase();
  if (!isLevel(level)) throw new UsageError(`--log-level: one of ${LEVELS.join(', ')}`);
  return {
    help: values.help,
    host: values.host,
    port: number('--port', values.port, { integer: true, max: 65535 }),
    graceMs: number('--grace', values.grace) * 1000,
    workMs: number('--work-ms', values['work-ms']),
    level,
  };
}

async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const logger = new Logger(args.level);
  let server: RunningServer;
  try {
    server = await startServer({ host: args.host, port: args.port, workMs: args.workMs, logger });
  } catch (error) {
    logger.error(error instanceof Error ? error.message : String(error));
    return 1;
  }
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info(`${signal}: stopping (grace ${args.graceMs / 1000} s)`);
      process.removeListener('SIGTERM', onSignal).removeListener('SIGINT', onSignal);
      const force = (again: NodeJS.Signals) => {
        logger.warn(`${again} again: cancelling the calls in flight`);
        server.forceStop();
      };
      process.on('SIGTERM', force).on('SIGINT', force);
      server.stop(args.graceMs).then(resolve, resolve);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  });
  // stdout is synchronous for files and pipes on POSIX: the line is out when
  // write returns.
  process.stdout.write(`listening on ${server.address}\n`);
  await stopped;
  logger.info('stopped');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`${text}\n`);
    process.exit(1);
  },
);
