// A small leveled logger on stderr (stdout carries only the `listening on` line).

export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

export function isLevel(name: string): name is Level {
  return (LEVELS as readonly string[]).includes(name);
}

export class Logger {
  constructor(
    private readonly threshold: Level = 'info',
    private readonly name = 'flow_handler',
  ) {}

  private write(level: Level, message: string): void {
    if (LEVELS.indexOf(level) < LEVELS.indexOf(this.threshold)) return;
    process.stderr.write(
      `${new Date().toISOString()} ${level.toUpperCase()} ${this.name}: ${message}\n`,
    );
  }

  debug(message: string): void {
    this.write('debug', message);
  }
  info(message: string): void {
    this.write('info', message);
  }
  warn(message: string): void {
    this.write('warn', message);
  }
  error(message: string): void {
    this.write('error', message);
  }
}

/** Logs nothing: the default for servers started by the tests. */
export const silent = new Logger('error');
